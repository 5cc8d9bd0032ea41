//! The HTTP server of `hookline serve`, for a process left running: bounded
//! time to send a request's headers (and to sit idle between requests) and
//! its body, a cap on connections served at once (more wait in the listen
//! backlog), and a graceful stop on SIGTERM or Ctrl-C that lets requests in
//! flight and queued jobs finish within a grace period.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hookline_core::adapters::store::DEFAULT_MAX_BYTES;
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// The server's limits, from the environment.
#[derive(Debug, Clone)]
pub struct Limits {
    /// To send a request's headers, and the longest a kept-alive connection
    /// sits idle (HOOKLINE_HEADER_TIMEOUT_MS, 10 s).
    pub header_timeout: Duration,
    /// To send a request's body (HOOKLINE_BODY_TIMEOUT_MS, 30 s).
    pub body_timeout: Duration,
    /// Connections served at once (HOOKLINE_MAX_CONNECTIONS, 1024).
    pub max_connections: usize,
    /// After SIGTERM or Ctrl-C, for requests and queued jobs to finish
    /// (HOOKLINE_SHUTDOWN_GRACE_MS, 30 s).
    pub shutdown_grace: Duration,
    /// In-memory state: what conversations and their logs may take
    /// (HOOKLINE_MEMORY_MAX_BYTES, 256 MiB).
    pub memory_max_bytes: usize,
}

impl Limits {
    pub fn from_env() -> Result<Self, String> {
        let number = |name: &str, default: u64| -> Result<u64, String> {
            match std::env::var(name) {
                Err(_) => Ok(default),
                Ok(v) => match v.trim().parse::<u64>() {
                    Ok(0) | Err(_) => Err(format!("{name} must be a whole number above 0, got {v:?}")),
                    Ok(n) => Ok(n),
                },
            }
        };
        Ok(Self {
            header_timeout: Duration::from_millis(number("HOOKLINE_HEADER_TIMEOUT_MS", 10_000)?),
            body_timeout: Duration::from_millis(number("HOOKLINE_BODY_TIMEOUT_MS", 30_000)?),
            max_connections: number("HOOKLINE_MAX_CONNECTIONS", 1024)? as usize,
            shutdown_grace: Duration::from_millis(number("HOOKLINE_SHUTDOWN_GRACE_MS", 30_000)?),
            memory_max_bytes: number("HOOKLINE_MEMORY_MAX_BYTES", DEFAULT_MAX_BYTES as u64)? as usize,
        })
    }
}

/// Serves `app` until SIGTERM or Ctrl-C, then stops accepting and waits (at
/// most the grace period) for open requests and for `drained` to resolve.
pub async fn serve(listener: TcpListener, app: Router, limits: &Limits, drained: impl Future<Output = ()>) {
    tokio::spawn(release_freed_memory());
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only (what chat clients and middlewares speak to a local
    // server): its header timer runs from the connection's first byte, or
    // its absence, and between requests.
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let app = app.clone();
        let body_timeout = limits.body_timeout;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(|body| Body::new(Deadline::new(body, body_timeout)));
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("stopping: no new connections; finishing requests and queued jobs");
    let finished = async {
        graceful.shutdown().await;
        drained.await;
    };
    if tokio::time::timeout(limits.shutdown_grace, finished).await.is_err() {
        tracing::warn!(grace = ?limits.shutdown_grace, "stopped with work unfinished after the grace period");
    }
}

/// SIGTERM (how service managers and containers stop a process) or Ctrl-C.
pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// A request body that must arrive whole by a deadline: one that trickles in
/// fails (the handler answers 400) instead of holding its connection.
struct Deadline {
    body: Incoming,
    deadline: Pin<Box<Sleep>>,
}

impl Deadline {
    fn new(body: Incoming, within: Duration) -> Self {
        Self { body, deadline: Box::pin(tokio::time::sleep_until(Instant::now() + within)) }
    }
}

impl hyper::body::Body for Deadline {
    type Data = axum::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err("the request body did not arrive in time".into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// glibc keeps what is freed in its arenas for reuse: under mixed traffic
/// resident memory would creep up while the store stays within its budget.
/// Handing the free pages back now and then keeps it flat.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
async fn release_freed_memory() {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    loop {
        every.tick().await;
        // SAFETY: malloc_trim only returns free pages to the system.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Other allocators return memory by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
async fn release_freed_memory() {}
