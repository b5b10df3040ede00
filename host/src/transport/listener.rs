//! The accept loop: one TCP listener for HTTP and WebSockets, with TLS when
//! configured.
//!
//! Each connection gets the handshake timeout for its TLS handshake and its
//! first request head (hyper's header-read timeout), so a client that
//! connects and says nothing cannot hold a socket. At most
//! `limits.max_http_connections` TCP connections are served before their
//! upgrade at once: the loop takes a permit before it accepts, so past the
//! cap new connections wait in the kernel's backlog instead of each holding
//! a task and a file. An upgraded WebSocket gives its permit back (it is
//! counted by the hub's connection limit instead). Request bodies have
//! their own deadline where handlers read them (`limits.body_timeout_ms`),
//! and an idle keep-alive connection has the header-read timeout for its
//! next request head, so no HTTP connection holds its permit for long.
//! HTTP/2 with prior knowledge is not served (see [`Opening::Http2`]). Every
//! error a connection is answered carries the JSON error body
//! ([`http_errors`]). On shutdown the loop
//! stops accepting and open HTTP connections finish their requests;
//! upgraded WebSockets are tracked and closed by their own tasks.

use super::http_errors::{self, JsonErrorHeads};
use super::tls::Certificates;
use crate::lifecycle::Tasks;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub struct Listener {
    pub tcp: TcpListener,
    pub app: Router,
    pub tls: Option<Arc<Certificates>>,
    pub handshake_timeout: Duration,
    /// TCP connections served at once before their upgrade, if any.
    pub max_http_connections: usize,
    /// Where connection tasks are tracked.
    pub tasks: Tasks,
}

impl Listener {
    /// Serve until `shutdown`, then let open HTTP exchanges finish for up to `grace`.
    pub async fn serve(self, shutdown: CancellationToken, grace: Duration) {
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.handshake_timeout);
        let builder = Arc::new(builder);
        let permits = Arc::new(Semaphore::new(self.max_http_connections.max(1)));
        let routes = self.app.layer(axum::middleware::map_response(http_errors::with_json_body));
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let (tcp, remote) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.tcp.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let app = routes.clone();
            let builder = Arc::clone(&builder);
            let watcher = graceful.watcher();
            match &self.tls {
                None => {
                    let handshake_timeout = self.handshake_timeout;
                    tokio::spawn(self.tasks.track(async move {
                        let _permit = permit;
                        // hyper's header-read timeout starts once it reads;
                        // a client that never sends a byte is ours to drop.
                        match opening(&tcp, handshake_timeout).await {
                            Opening::Http1 => serve_connection(builder, tcp, remote, app, watcher).await,
                            Opening::Http2 => tracing::debug!(%remote, "HTTP/2 with prior knowledge is not served"),
                            Opening::Silent => tracing::debug!(%remote, "no request within the handshake timeout"),
                        }
                    }));
                }
                Some(certificates) => {
                    let acceptor = certificates.acceptor();
                    let handshake_timeout = self.handshake_timeout;
                    tokio::spawn(self.tasks.track(async move {
                        let _permit = permit;
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => serve_connection(builder, tls, remote, app, watcher).await,
                            Ok(Err(e)) => tracing::debug!(%remote, "TLS handshake failed: {e}"),
                            Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                        }
                    }));
                }
            }
        }
        drop(self.tcp);
        if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
            tracing::warn!("HTTP connections still open after the {grace:?} grace period");
        }
    }
}

/// How a plain-TCP client opens.
enum Opening {
    Http1,
    /// The HTTP/2 connection preface. HTTP/2 is not served: hyper's HTTP/2
    /// server has no header or idle timeout, so an idle HTTP/2 connection
    /// would hold its place under `max_http_connections` for ever. The
    /// WebSockets and the API are HTTP/1.1 (and TLS offers only http/1.1).
    Http2,
    /// Nothing within the handshake timeout, or closed.
    Silent,
}

/// Peek at the client's first bytes, within `timeout`, without reading them.
async fn opening(tcp: &tokio::net::TcpStream, timeout: Duration) -> Opening {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0";
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = [0u8; PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, tcp.peek(&mut seen)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return Opening::Silent,
        };
        if !PREFACE.starts_with(&seen[..n]) {
            return Opening::Http1;
        }
        if n == PREFACE.len() {
            return Opening::Http2;
        }
        // Only part of the preface so far; peek answers at once while bytes
        // wait, so pause before looking again.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn serve_connection<IO>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    io: IO,
    remote: SocketAddr,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = app.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        request
    });
    let io = TokioIo::new(JsonErrorHeads::new(io));
    let connection = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    if let Err(e) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%remote, "HTTP connection ended: {e}");
    }
}
