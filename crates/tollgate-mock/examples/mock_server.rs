//! Runs the mock provider standalone: `cargo run -p tollgate-mock --example mock_server -- 127.0.0.1:9999`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9999".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("mock provider listening on http://{}", listener.local_addr()?);
    tollgate_mock::serve(listener, tollgate_mock::MockConfig::default()).await
}
