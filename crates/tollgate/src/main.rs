//! The `tollgate` binary: parse the command line, set up logging, run.

use clap::Parser;

// Per-request allocations (bodies, headers, the ledger row) are many and small;
// glibc malloc spent ~14 % of the gateway's CPU on them under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let filter = std::env::var("TOLLGATE_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let cli = tollgate::cli::Cli::parse();
    let runtime = match runtime_builder().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tollgate::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One worker thread per core the process may use (its CPU affinity and
/// cgroup quota count), or `TOLLGATE_WORKER_THREADS`. With one core, the
/// single-threaded scheduler: no work-stealing bookkeeping and no cross-thread
/// wake-ups on the request path, for the same work on the same core.
fn runtime_builder() -> tokio::runtime::Builder {
    let workers = std::env::var("TOLLGATE_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    }
}
