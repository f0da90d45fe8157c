//! The listener: accepts TCP connections and serves HTTP/1.1 and HTTP/2 on
//! them, within limits that keep slow, idle and greedy clients from taking
//! the gateway down (`[server]` in the config):
//!
//! - at most `max_connections` open connections; one more is answered
//!   `503` and closed at once, so the refusal costs nothing to hold;
//! - a connection with no request in progress is closed after
//!   `idle_timeout`; once a request's first byte has arrived, its headers
//!   must be complete within `header_read_timeout` (a trickling client is cut);
//! - a client that accepts no bytes of its response for `write_timeout` is
//!   cut: its streams end, and their reservations settle to what was
//!   delivered (the connection is marked stalled for the ledger row);
//! - at most `max_in_flight` requests run at once; more are answered
//!   `503 overloaded` before their body is read (`/healthz` and `/readyz`
//!   are exempt; `/readyz` answers 503 while saturated);
//! - on shutdown, new connections stop, idle ones close, requests in flight
//!   get `shutdown_timeout` to finish; then they are cut (and ledgered).
//!
//! Request bodies have their own deadline (`body_read_timeout`), applied
//! where they are read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerLimits;
use crate::error::{ApiError, ErrorShape};

/// What the request path may learn about the connection it arrived on.
#[derive(Debug)]
pub struct ConnState {
    started: Instant,
    /// The client's address (the audit log's "from where").
    peer: std::net::SocketAddr,
    /// Requests of this connection being served (their response not yet finished).
    in_flight: AtomicUsize,
    /// Bumped when a request starts: a first byte seen before it is stale.
    epoch: AtomicU64,
    /// When the connection last became idle, in ms since `started`.
    idle_since_ms: AtomicU64,
    /// Set when the client stopped reading and the write timeout cut it.
    stalled: AtomicBool,
}

impl ConnState {
    fn new(peer: std::net::SocketAddr) -> Arc<ConnState> {
        Arc::new(ConnState {
            started: Instant::now(),
            peer,
            in_flight: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
        })
    }

    /// The address the client connected from.
    pub fn peer(&self) -> std::net::SocketAddr {
        self.peer
    }

    /// The client stopped reading its response and was cut for it.
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire)
    }

    fn enter(self: &Arc<Self>) -> InFlight {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
}

/// The connection a request arrived on (a request extension).
#[derive(Debug, Clone)]
pub struct Connection(pub Arc<ConnState>);

/// One request of a connection in progress, until its response body is done.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = &self.0;
        if c.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            c.idle_since_ms.store(c.started.elapsed().as_millis() as u64, Ordering::Release);
        }
    }
}

/// The socket, with the idle, header and write deadlines enforced on its reads and writes.
struct Guarded {
    io: TcpStream,
    conn: Arc<ConnState>,
    limits: ServerLimits,
    /// The first byte of a new request (and the epoch it belongs to).
    first_byte: Option<(Instant, u64)>,
    read_timer: Pin<Box<Sleep>>,
    write_timer: Pin<Box<Sleep>>,
    write_armed: bool,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

impl Guarded {
    fn new(io: TcpStream, conn: Arc<ConnState>, limits: ServerLimits) -> Guarded {
        let far = Instant::now() + limits.idle_timeout;
        Guarded {
            io,
            conn,
            limits,
            first_byte: None,
            read_timer: Box::pin(tokio::time::sleep_until(far)),
            write_timer: Box::pin(tokio::time::sleep_until(far)),
            write_armed: false,
        }
    }

    /// A pending write: cut the client once it has accepted nothing for the write timeout.
    fn write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if !self.write_armed {
            self.write_timer.as_mut().reset(Instant::now() + self.limits.write_timeout);
            self.write_armed = true;
        }
        if self.write_timer.as_mut().poll(cx).is_ready() {
            self.conn.stalled.store(true, Ordering::Release);
            return Poll::Ready(Err(timed_out("client accepted no bytes within the write timeout")));
        }
        Poll::Pending
    }
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let busy = this.conn.in_flight.load(Ordering::Acquire) > 0;
        let epoch = this.conn.epoch.load(Ordering::Acquire);
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = this.first_byte.is_none_or(|(_, e)| e != epoch);
                if buf.filled().len() > before && !busy && fresh {
                    this.first_byte = Some((Instant::now(), epoch));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if busy {
                    // A request is being served: its own deadlines apply.
                    return Poll::Pending;
                }
                let deadline = match this.first_byte {
                    Some((at, e)) if e == epoch => at + this.limits.header_read_timeout,
                    _ => {
                        let idle = this.conn.idle_since_ms.load(Ordering::Acquire);
                        this.conn.started + std::time::Duration::from_millis(idle) + this.limits.idle_timeout
                    }
                };
                // The timer is only moved earlier: a later deadline (the usual
                // case, after each request) is checked when the old one fires,
                // so a keep-alive request costs no timer registration.
                if deadline < this.read_timer.deadline() {
                    this.read_timer.as_mut().reset(deadline);
                }
                while this.read_timer.as_mut().poll(cx).is_ready() {
                    if Instant::now() >= deadline {
                        return Poll::Ready(Err(timed_out("client sent no complete request in time")));
                    }
                    this.read_timer.as_mut().reset(deadline);
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => self.write_pending(cx),
            ready => {
                self.write_armed = false;
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.write_pending(cx),
            ready => {
                self.write_armed = false;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The `503` a refused connection or request gets.
fn overloaded(message: &str) -> ApiError {
    ApiError::Overloaded { message: message.into() }
}

/// Refuses a connection over the cap with a complete HTTP answer, then closes it.
async fn refuse(mut tcp: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = overloaded("the gateway is at its connection limit; retry shortly").body(ErrorShape::OpenAi).to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let _ = tcp.write_all(answer.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// How a running server is told to stop.
#[derive(Clone, Default)]
pub struct Stop {
    /// Stop accepting; let connections finish what they are doing.
    pub graceful: CancellationToken,
    /// Drop every connection now.
    pub hard: CancellationToken,
}

/// Serves `router` on `listener` until `stop.graceful` fires, then until every
/// connection has closed or `stop.hard` fires. Returns the connections' tracker.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    in_flight: Arc<Semaphore>,
    stop: Stop,
) -> TaskTracker {
    let connections = TaskTracker::new();
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Idle and header deadlines are the socket wrapper's; hyper's own need a timer we do not give it.
    builder.http1().keep_alive(true);
    let builder = Arc::new(builder);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            _ = stop.graceful.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection refused: at max_connections");
            connections.spawn(refuse(tcp));
            continue;
        };
        let conn = ConnState::new(peer);
        let io = TokioIo::new(Guarded::new(tcp, conn.clone(), limits));
        let (router, in_flight) = (router.clone(), in_flight.clone());
        let service =
            hyper::service::service_fn(move |req| handle(router.clone(), conn.clone(), in_flight.clone(), req));
        let builder = builder.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _permit = permit;
            let served = builder.serve_connection_with_upgrades(io, service);
            tokio::pin!(served);
            tokio::select! {
                _ = served.as_mut() => return,
                _ = stop.graceful.cancelled() => served.as_mut().graceful_shutdown(),
                _ = stop.hard.cancelled() => return,
            }
            tokio::select! {
                _ = served.as_mut() => {}
                _ = stop.hard.cancelled() => {}
            }
        });
    }
    connections.close();
    connections
}

/// One request: the in-flight cap, the connection as a request extension, and
/// the connection's busy mark and the permit held until the response body ends.
async fn handle(
    router: Router,
    conn: Arc<ConnState>,
    in_flight: Arc<Semaphore>,
    mut req: http::Request<Incoming>,
) -> Result<http::Response<Body>, std::convert::Infallible> {
    let busy = conn.enter();
    // Health and readiness must answer (and measure) under load.
    let exempt = matches!(req.uri().path(), "/healthz" | "/readyz");
    let permit = if exempt {
        None
    } else {
        match in_flight.try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let shape = if req.headers().contains_key("anthropic-version") {
                    ErrorShape::Anthropic
                } else {
                    ErrorShape::OpenAi
                };
                let mut r = overloaded("the gateway is at its limit of requests in flight; retry shortly")
                    .into_response_for(shape);
                r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
                return Ok(r);
            }
        }
    };
    req.extensions_mut().insert(Connection(conn));
    let resp = tower::ServiceExt::oneshot(router, req.map(Body::new)).await.unwrap_or_else(|e| match e {});
    Ok(resp.map(|b| {
        Body::new(b.map_frame(move |f| {
            let _ = (&busy, &permit);
            f
        }))
    }))
}
