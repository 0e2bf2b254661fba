//! The gateway's listener: accepts connections, optionally over TLS (a
//! certificate and key from files, ALPN `h2` and `http/1.1`), and serves
//! each with HTTP/1 or HTTP/2 under the same limits:
//!
//! - at most [`Listening::max_connections`] at once; past it, new
//!   connections wait in the kernel's accept backlog until one closes;
//! - the header-read timeout: a connection (HTTP/1 or HTTP/2, after the
//!   TLS handshake, which has the same deadline) with no request in
//!   flight for that long is closed, whether it never sent a request,
//!   trickles its headers or idles between requests (HTTP/1's is hyper's
//!   own; HTTP/2's is [`Activity`]); a request in flight, a stream
//!   included, keeps its connection;
//! - request headers of at most [`MAX_HEADER_BYTES`] (both protocols).
//!
//! Bodies are read only after authentication, within their own budget
//! ([`crate::limits`]). On shutdown ([`shutdown_signal`]: SIGTERM or
//! Ctrl-C) every connection is asked to finish what it has in flight, and
//! [`serve`] returns when all have. The metrics port, when it has one of
//! its own, is [`serve_metrics`].

use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Default for how many connections one gateway process serves at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// The most a request's headers may take (HTTP/1 read buffer, HTTP/2
/// header list).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// How the listener serves.
#[derive(Clone)]
pub struct Listening {
    /// Headers (and the TLS handshake) must arrive within this; a
    /// connection idle this long is closed.
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// TLS, when the listener has a certificate.
    pub tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening")
            .field("header_timeout", &self.header_timeout)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Why the TLS certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert {}: {message}", path.display())]
    Certificate { path: PathBuf, message: String },
    #[error("--tls-key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("--tls-cert / --tls-key: {0} (is the key the certificate's?)")]
    Config(#[from] rustls::Error),
}

/// A TLS acceptor for the certificate chain and private key in PEM files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad_cert = |message: String| TlsError::Certificate {
        path: cert.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad_cert(e.to_string()))?;
    if chain.is_empty() {
        return Err(bad_cert("no PEM CERTIFICATE in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for
/// every connection to finish what it has in flight (streams included).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    listening: Listening,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(listening.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(listening.header_timeout))
        .keep_alive_timeout(listening.header_timeout);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(listening.max_connections));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: do not spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small writes (an SSE event, a JSON answer) go out at once
        // instead of waiting for the previous segment's ACK.
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            app.clone(),
            Arc::clone(&builder),
            listening.clone(),
            stopping.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    // Each connection holds its slot until it is done.
    let all = u32::try_from(listening.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// One connection: the TLS handshake (within the header timeout), then
/// HTTP.
async fn connection(
    stream: tokio::net::TcpStream,
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    listening: Listening,
    stopping: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let timeout = listening.header_timeout;
    match &listening.tls {
        None => serve_http(TokioIo::new(stream), app, &builder, timeout, stopping).await,
        Some(acceptor) => match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => serve_http(TokioIo::new(tls), app, &builder, timeout, stopping).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        },
    }
}

async fn serve_http<I>(
    io: I,
    app: Router,
    builder: &Builder<TokioExecutor>,
    timeout: Duration,
    mut stopping: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let service = hyper::service::service_fn({
        let activity = Arc::clone(&activity);
        move |request: hyper::Request<hyper::body::Incoming>| {
            let busy = activity.start();
            let app = app.clone();
            async move {
                let response = app.oneshot(request.map(axum::body::Body::new)).await?;
                // In flight until the answer's body is done (or dropped).
                Ok::<_, std::convert::Infallible>(response.map(move |body| {
                    axum::body::Body::new(body.map_frame(move |frame| {
                        let _ = &busy;
                        frame
                    }))
                }))
            }
        }
    });
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopping.changed() => {
            // Shutting down: finish what is in flight.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        () = activity.idle_for(timeout) => {
            // Idle (or never used): close, giving a request that just
            // started one more timeout to finish its headers.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(timeout, conn).await;
        }
    }
}

/// Requests in flight on one connection.
#[derive(Debug, Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// Moves on every start and end.
    generation: AtomicU64,
    changed: Notify,
}

/// One request in flight, until dropped.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Activity {
    fn start(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.moved();
        Busy(Arc::clone(self))
    }

    fn moved(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Resolves once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let generation = self.generation.load(Ordering::SeqCst);
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                changed.await;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(timeout) => {
                    if self.generation.load(Ordering::SeqCst) == generation {
                        return;
                    }
                }
                () = &mut changed => {}
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.moved();
    }
}

/// Serves the metrics port (`--metrics-listen`): plain HTTP, `app` only,
/// until aborted. Says where on stdout, best effort (whoever read the
/// first line may have closed it since).
pub fn serve_metrics(
    listener: TcpListener,
    addr: std::net::SocketAddr,
    app: Router,
) -> tokio::task::JoinHandle<()> {
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stdout(),
        "palisade-gateway serving /metrics on http://{addr}/metrics"
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    })
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT). The handlers are installed
/// when this is called, not when the future is first polled: a signal that
/// arrives after the gateway said it listens, but before the accept loop
/// first looked at this future, must still drain the audit queue rather
/// than kill the process with decisions unwritten.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            let next = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = next(term) => {},
                _ = next(interrupt) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_with_nothing_in_flight_for_the_whole_timeout() {
        let activity = Arc::new(Activity::default());
        let t = Duration::from_secs(10);
        let busy = activity.start();
        let idle = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move { activity.idle_for(t).await }
        });
        tokio::time::sleep(t * 5).await;
        assert!(!idle.is_finished(), "idle while a request was in flight");
        drop(busy);
        tokio::time::sleep(t / 2).await;
        // A request that starts and ends restarts the clock.
        drop(activity.start());
        tokio::time::sleep(t * 3 / 4).await;
        assert!(!idle.is_finished());
        tokio::time::sleep(t).await;
        assert!(idle.is_finished());
    }
}
