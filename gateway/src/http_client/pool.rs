//! Connections to plain-HTTP (`http://`) providers — a local Ollama, an
//! OpenAI-compatible server in the cluster — kept in the gateway's own
//! pool and driven by the request that is using them.
//!
//! hyper's pooled client runs every connection as a task of its own: the
//! request, each chunk of the answer and each reuse cross from that task
//! to the request's and back, a wake-up each way. Here the connection is
//! polled inside the request's own task, alongside the answer it is
//! reading, the way a single-threaded proxy's event loop handles both
//! sides of an exchange: a chunk is read from the provider and handed on
//! in one wake-up, and chunks that arrive together leave together.
//!
//! A connection goes back to the pool only once its answer was read to the
//! end; one dropped part-way (the client went away, the deadline passed,
//! an error status whose body was not read) is closed. A connection is
//! looked at once when it is taken: one the provider has closed is dropped
//! and the next one, or a new one, is used. A sweep every few seconds drops
//! those the provider closed and those idle too long, so an idle gateway
//! holds no half-closed sockets. If the provider's close arrives only after
//! the request was written, the request fails as a connection error (like
//! hyper's own pool, a POST is not sent twice); it is sent again on a new
//! connection only when the pooled one refused it before writing anything.

use axum::body::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};
use hyper::http::{HeaderValue, Request, Response, Uri, header};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::ServiceExt;

/// How long an unused connection is kept.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The most unused connections kept per provider address.
pub(super) const MAX_IDLE_PER_HOST: usize = 256;

type Driver = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// One HTTP/1.1 connection: the handle requests are sent through and the
/// state machine that reads and writes the socket.
struct Conn {
    send: http1::SendRequest<Full<Bytes>>,
    /// `None` once the connection ended (closed by either side, or failed).
    driver: Option<Driver>,
}

/// Lets the connection read and write what it can now; false once it has
/// ended. Registers the calling task's waker for the socket.
fn drive(driver: &mut Option<Driver>, cx: &mut Context<'_>) -> bool {
    if let Some(d) = driver
        && Pin::new(d).poll(cx).is_ready()
    {
        *driver = None;
    }
    driver.is_some()
}

impl Conn {
    /// Whether a request can be sent now: the connection is open and idle.
    fn ready(&mut self, cx: &mut Context<'_>) -> bool {
        drive(&mut self.driver, cx) && matches!(self.send.poll_ready(cx), Poll::Ready(Ok(())))
    }
}

/// How often unused connections are looked at (see [`Pool::sweep`]).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Unused connections by provider address (`host:port`), newest last.
#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<HashMap<String, Vec<(Conn, Instant)>>>,
    /// Whether the sweeping task was started (on the first `put`, which
    /// always runs inside the gateway's runtime).
    sweeping: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let counts: HashMap<&str, usize> =
            idle.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
        f.debug_struct("Pool").field("idle", &counts).finish()
    }
}

impl Pool {
    /// The most recently used connection to `key` (the warmest), unless it
    /// has been idle too long: then so have the others, and they are all
    /// closed (after the lock is let go).
    fn take(&self, key: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let conns = idle.get_mut(key)?;
        let (conn, since) = conns.pop()?;
        if since.elapsed() < IDLE_TIMEOUT {
            return Some(conn);
        }
        // This one is the newest: every other is older still.
        let expired = std::mem::take(conns);
        drop(idle);
        drop((conn, expired));
        None
    }

    fn put(self: &Arc<Self>, key: String, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let conns = idle.entry(key).or_default();
        let oldest = (conns.len() >= MAX_IDLE_PER_HOST).then(|| conns.remove(0));
        conns.push((conn, Instant::now()));
        drop(idle);
        drop(oldest);
        if !self
            .sweeping
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            let pool = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(SWEEP_EVERY);
                every.tick().await;
                loop {
                    every.tick().await;
                    let Some(pool) = pool.upgrade() else { return };
                    pool.sweep();
                }
            });
        }
    }

    /// Drops the connections the provider closed and those idle longer
    /// than [`IDLE_TIMEOUT`], and forgets addresses with none left.
    pub(super) fn sweep(&self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut closed = Vec::new();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        for conns in idle.values_mut() {
            for (mut conn, since) in std::mem::take(conns) {
                // Polled with a waker that wakes nobody: the socket's end,
                // if it came, is read now; readiness is looked at again
                // with the request's own waker when the connection is taken.
                if since.elapsed() < IDLE_TIMEOUT && conn.ready(&mut cx) {
                    conns.push((conn, since));
                } else {
                    closed.push(conn);
                }
            }
        }
        idle.retain(|_, conns| !conns.is_empty());
        drop(idle);
        drop(closed);
    }

    /// How many unused connections are kept, to every address.
    #[cfg(test)]
    pub(super) fn idle(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.values().map(Vec::len).sum()
    }

    /// An idle connection to `key` that is still open, if there is one.
    async fn checkout(&self, key: &str) -> Option<Conn> {
        loop {
            let mut conn = self.take(key)?;
            // One look: a connection the provider closed reads its end now.
            if poll_fn(|cx| Poll::Ready(conn.ready(cx))).await {
                return Some(conn);
            }
        }
    }

    /// Sends `request` (absolute `http://` URI) on a pooled or new
    /// connection and waits for the answer's headers, driving the
    /// connection meanwhile. The answer's body must be read through the
    /// returned [`Lease`], which keeps driving it.
    pub(super) async fn send(
        self: &Arc<Self>,
        connector: &HttpConnector,
        mut request: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Lease), Box<dyn std::error::Error + Send + Sync>> {
        let uri = request.uri().clone();
        let authority = uri.authority().ok_or("the provider's URL has no host")?;
        // Host and port only: never user information from the URL.
        let port = authority.port_u16().unwrap_or(80);
        let key = format!("{}:{port}", authority.host());
        // HTTP/1.1 to an origin server: the path in the request line and
        // the host (and a port other than 80) in Host, as hyper's pooled
        // client sends them.
        let host = match port {
            80 => authority.host(),
            _ => &key,
        };
        request
            .headers_mut()
            .insert(header::HOST, HeaderValue::from_str(host)?);
        *request.uri_mut() = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse::<Uri>()?;
        loop {
            let (mut conn, reused) = match self.checkout(&key).await {
                Some(conn) => (conn, true),
                None => (connect(connector, uri.clone()).await?, false),
            };
            let Conn { send, driver } = &mut conn;
            let mut answer = pin!(send.try_send_request(request));
            let answer = poll_fn(|cx| {
                drive(driver, cx);
                answer.as_mut().poll(cx)
            })
            .await;
            match answer {
                Ok(response) => {
                    let lease = Lease {
                        conn: Some(conn),
                        pool: Arc::clone(self),
                        key,
                    };
                    return Ok((response, lease));
                }
                // Closed by the provider before the request was written:
                // send it on a fresh connection.
                Err(e) if reused => match take_message(e) {
                    Ok(unsent) => request = unsent,
                    Err(e) => return Err(e.into()),
                },
                Err(e) => return Err(e.into_error().into()),
            }
        }
    }
}

/// The request back from a send that failed before writing it, or the error.
fn take_message(
    mut e: TrySendError<Request<Full<Bytes>>>,
) -> Result<Request<Full<Bytes>>, hyper::Error> {
    e.take_message().ok_or_else(|| e.into_error())
}

/// A new connection: the connector's DNS, connect timeout, `TCP_NODELAY`
/// and keepalive, then the HTTP/1.1 handshake (which sends nothing).
async fn connect(
    connector: &HttpConnector,
    uri: Uri,
) -> Result<Conn, Box<dyn std::error::Error + Send + Sync>> {
    let io = connector.clone().oneshot(uri).await?;
    let (send, driver) = http1::handshake(io).await?;
    Ok(Conn {
        send,
        driver: Some(driver),
    })
}

/// The connection an answer is being read from: driven on every poll of the
/// body, back to the pool once the body ended, closed if dropped before.
pub(super) struct Lease {
    conn: Option<Conn>,
    pool: Arc<Pool>,
    key: String,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("key", &self.key).finish()
    }
}

impl Lease {
    /// Lets the connection read (and hand to the body) what has arrived.
    pub(super) fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(conn) = self.conn.as_mut()
            && !drive(&mut conn.driver, cx)
        {
            // Ended: whatever it read is in the body already.
            self.conn = None;
        }
    }

    /// The body was read to its end: the connection can serve another.
    pub(super) fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put(std::mem::take(&mut self.key), conn);
        }
    }
}
