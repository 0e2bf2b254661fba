//! The HTTP client the gateway calls providers with. `https://` providers
//! go through hyper's pooled client over rustls (HTTP/1.1, or HTTP/2 where
//! the provider offers it by ALPN), trusting the system's root
//! certificates; `http://` ones (a local Ollama, a server in the cluster)
//! through the gateway's own pool, which drives each connection inside the
//! request using it ([`pool`]). It does what a proxy needs
//! and nothing a browser does: redirects are not followed (a provider that
//! answers 3xx is answering something else than its API, and following it
//! would carry the credentials along), no proxy discovery, no cookies.
//! Each call has one deadline covering the answer's headers and its whole
//! body, streams included.

use axum::body::Bytes;
use futures_util::Stream;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

mod pool;

/// Why a call failed before an answer was complete.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The deadline passed.
    #[error("no complete answer within the timeout")]
    Timeout,
    /// Connecting, the TLS handshake, or the exchange itself failed.
    #[error("{0}")]
    Connect(String),
    /// A whole (not streamed) answer was larger than [`MAX_ANSWER_BYTES`].
    #[error("the answer is larger than {} MiB", MAX_ANSWER_BYTES >> 20)]
    TooLarge,
}

/// The most a non-streamed answer may hold: a chat completion is
/// kilobytes; this only stops a broken or hostile server from filling the
/// gateway's memory before the timeout.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;

/// One pooled client for every provider; cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpClient {
    /// `https://` providers.
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `http://` providers: the connector's settings, the gateway's pool.
    connector: HttpConnector,
    plain: Arc<pool::Pool>,
}

/// A provider's response whose headers arrived; its body is read within
/// the same deadline.
#[derive(Debug)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    body: ResponseBody,
    deadline: Instant,
}

/// A response's body; for an `http://` provider it also drives the
/// connection it arrives on.
#[derive(Debug)]
struct ResponseBody {
    incoming: Incoming,
    lease: Option<pool::Lease>,
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(lease) = this.lease.as_mut() {
            lease.drive(cx);
        }
        let frame = Pin::new(&mut this.incoming).poll_frame(cx);
        if let Poll::Ready(None) = frame
            && let Some(lease) = this.lease.take()
        {
            lease.release();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.incoming.size_hint()
    }
}

impl HttpClient {
    /// Idle connections are kept 90 s; connecting gives up after 10 s; TCP
    /// keepalive (15 s, then every 15 s, 3 probes) finds connections a NAT
    /// or load balancer dropped silently.
    /// Without system root certificates (no `ca-certificates` in the
    /// image) plain-HTTP providers still work and HTTPS ones fail their
    /// handshake, which the log says at start-up.
    pub fn new() -> Self {
        // rustls with the ring provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = match rustls::ClientConfig::builder().with_native_roots() {
            Ok(roots) => roots.with_no_client_auth(),
            Err(e) => {
                tracing::warn!(error = %e, "no system root certificates: HTTPS providers cannot be verified and will fail");
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            }
        };
        Self::with_tls(tls)
    }

    /// [`HttpClient::new`], trusting only `roots` for `https://`.
    pub fn with_roots(roots: rustls::RootCertStore) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self::with_tls(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    fn with_tls(tls: rustls::ClientConfig) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.set_keepalive(Some(Duration::from_secs(15)));
        http.set_keepalive_interval(Some(Duration::from_secs(15)));
        http.set_keepalive_retries(Some(3));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http.clone());
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(pool::IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Self {
            inner,
            connector: http,
            plain: Arc::default(),
        }
    }

    /// POSTs `body` as JSON with `headers` to `uri`; `timeout` covers the
    /// answer's headers and, through [`UpstreamResponse`], its body.
    pub async fn post_json(
        &self,
        uri: Uri,
        headers: &[(&str, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<UpstreamResponse, CallError> {
        self.send(Method::POST, uri, headers, Some(body), timeout)
            .await
    }

    /// GETs `uri` with `headers`, like [`HttpClient::post_json`].
    pub async fn get(
        &self,
        uri: Uri,
        headers: &[(&str, String)],
        timeout: Duration,
    ) -> Result<UpstreamResponse, CallError> {
        self.send(Method::GET, uri, headers, None, timeout).await
    }

    /// Sends `method` to `uri`, with `body` as JSON if given: the
    /// general form of the two above (registered HTTP tools use it).
    pub async fn send(
        &self,
        method: Method,
        uri: Uri,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<UpstreamResponse, CallError> {
        let deadline = Instant::now() + timeout;
        let json = body.is_some();
        let mut request = Request::new(Full::new(Bytes::from(body.unwrap_or_default())));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        let h = request.headers_mut();
        if json {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| CallError::Connect(format!("header {name}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| CallError::Connect(format!("header {name}: {e}")))?;
            h.insert(name, value);
        }
        let answer = async {
            if request.uri().scheme() == Some(&hyper::http::uri::Scheme::HTTP) {
                let (response, lease) = self
                    .plain
                    .send(&self.connector, request)
                    .await
                    .map_err(|e| failure(&*e))?;
                Ok((response, Some(lease)))
            } else {
                let response = self.inner.request(request).await.map_err(|e| failure(&e))?;
                Ok((response, None))
            }
        };
        match tokio::time::timeout_at(deadline, answer).await {
            Err(_) => Err(CallError::Timeout),
            Ok(Err(e)) => Err(e),
            Ok(Ok((response, lease))) => {
                // Taken apart, not copied: the headers move over.
                let (parts, incoming) = response.into_parts();
                Ok(UpstreamResponse {
                    status: parts.status,
                    headers: parts.headers,
                    body: ResponseBody { incoming, lease },
                    deadline,
                })
            }
        }
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

/// A timed-out connect (the connector's own 10 s) is a timeout, like the
/// deadline; anything else is a connection failure.
fn failure(e: &(dyn std::error::Error + 'static)) -> CallError {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return CallError::Timeout;
        }
        cause = c.source();
    }
    CallError::Connect(describe(e))
}

/// An error and its causes, as one line (hyper's own message is terse:
/// "client error (Connect)").
fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

impl UpstreamResponse {
    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, CallError> {
        self.bytes_at_most(MAX_ANSWER_BYTES).await
    }

    /// The whole body, refused past `max` bytes.
    pub async fn bytes_at_most(self, max: usize) -> Result<Bytes, CallError> {
        let limited = http_body_util::Limited::new(self.body, max.min(MAX_ANSWER_BYTES));
        match tokio::time::timeout_at(self.deadline, limited.collect()).await {
            Err(_) => Err(CallError::Timeout),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(CallError::TooLarge),
            Ok(Err(e)) => Err(failure(&*e)),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
        }
    }

    /// The body as it arrives; past the deadline the stream ends with a
    /// `TimedOut` error.
    pub fn bytes_stream(self) -> BodyStream {
        BodyStream {
            body: Some(self.body),
            deadline: Box::pin(tokio::time::sleep_until(self.deadline)),
        }
    }
}

/// A streamed answer's body as `Bytes`, ending at the call's deadline.
/// Polled once per chunk forwarded, so it is a plain state machine: no
/// future built per chunk, no `select!`.
#[derive(Debug)]
pub struct BodyStream {
    /// `None` once the body ended, failed or ran out of time.
    body: Option<ResponseBody>,
    deadline: Pin<Box<Sleep>>,
}

impl Stream for BodyStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.body = None;
            let e = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the provider did not finish its answer within the timeout",
            );
            return Poll::Ready(Some(Err(e)));
        }
        loop {
            match ready!(Pin::new(&mut *body).poll_frame(cx)) {
                None => {
                    this.body = None;
                    return Poll::Ready(None);
                }
                Some(Err(e)) => {
                    this.body = None;
                    return Poll::Ready(Some(Err(std::io::Error::other(describe(&e)))));
                }
                Some(Ok(frame)) => {
                    // Trailers carry no data.
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_timed_out_connect_is_a_timeout_and_other_failures_are_connect_errors() {
        #[derive(Debug)]
        struct Wrapped(std::io::Error);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let timed_out = Wrapped(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timeout",
        ));
        assert!(matches!(failure(&timed_out), CallError::Timeout));
        let refused = Wrapped(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        match failure(&refused) {
            CallError::Connect(why) => {
                assert_eq!(why, "client error (Connect): connection refused")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn https_endpoints_are_spoken_to_over_tls_and_http_ones_in_the_clear() {
        // A plain-HTTP server that answers whatever it is sent.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = s.read(&mut request).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    .await;
            }
        });
        let client = HttpClient::new();
        let post = |scheme: &str| {
            let uri: Uri = format!("{scheme}://{addr}/v1/chat/completions")
                .parse()
                .unwrap();
            client.post_json(uri, &[], b"{}".to_vec(), Duration::from_secs(5))
        };
        let plain = post("http").await.unwrap();
        assert_eq!(plain.status, StatusCode::OK);
        assert_eq!(plain.bytes().await.unwrap(), "{}");
        // The same server behind https://: the TLS handshake fails.
        match post("https").await {
            Err(CallError::Connect(why)) => assert!(!why.is_empty()),
            other => panic!("https:// must be TLS, got {other:?}"),
        }
    }

    /// A plain-HTTP server that answers every request with `answer`,
    /// keeping each request's head; with `close`, it ends the connection
    /// 20 ms after each answer without saying so (as a provider's idle
    /// timeout does).
    struct Raw {
        url: String,
        accepted: Arc<std::sync::atomic::AtomicUsize>,
        ended: Arc<std::sync::atomic::AtomicUsize>,
        heads: Arc<std::sync::Mutex<Vec<String>>>,
    }

    async fn raw_server(answer: &'static [u8], close: bool) -> Raw {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raw = Raw {
            url: format!(
                "http://{}/v1/chat/completions",
                listener.local_addr().unwrap()
            ),
            accepted: Arc::default(),
            ended: Arc::default(),
            heads: Arc::default(),
        };
        let (accepted, ended, heads) = (raw.accepted.clone(), raw.ended.clone(), raw.heads.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                accepted.fetch_add(1, SeqCst);
                let (ended, heads) = (ended.clone(), heads.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") else {
                            let mut more = [0u8; 4096];
                            match s.read(&mut more).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => buf.extend_from_slice(&more[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end + 2]).to_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |n| n.trim().parse().unwrap());
                        while buf.len() < end + 4 + length {
                            let mut more = [0u8; 4096];
                            let n = s.read(&mut more).await.unwrap();
                            buf.extend_from_slice(&more[..n]);
                        }
                        buf.drain(..end + 4 + length);
                        heads.lock().unwrap().push(head);
                        s.write_all(answer).await.unwrap();
                        if close {
                            // A moment later, as an idle timeout would.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            return;
                        }
                    }
                    ended.fetch_add(1, SeqCst);
                });
            }
        });
        raw
    }

    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
        6\r\ndata: \r\n3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n";

    async fn post(client: &HttpClient, url: &str) -> UpstreamResponse {
        let uri: Uri = url.parse().unwrap();
        client
            .post_json(uri, &[], b"{\"a\":1}".to_vec(), Duration::from_secs(5))
            .await
            .unwrap()
    }

    async fn read_stream(answer: UpstreamResponse) -> Vec<u8> {
        use futures_util::TryStreamExt;
        let chunks: Vec<Bytes> = answer.bytes_stream().try_collect().await.unwrap();
        chunks.concat()
    }

    #[tokio::test]
    async fn a_plain_http_connection_serves_request_after_request_once_each_answer_is_read() {
        use std::sync::atomic::Ordering::SeqCst;
        let server = raw_server(CHUNKED, false).await;
        let client = HttpClient::new();
        for _ in 0..3 {
            let answer = post(&client, &server.url).await;
            assert_eq!(answer.bytes().await.unwrap(), "data: onetwo");
            assert_eq!(
                read_stream(post(&client, &server.url).await).await,
                b"data: onetwo"
            );
        }
        assert_eq!(
            server.accepted.load(SeqCst),
            1,
            "one connection for six requests"
        );
        // The request as an origin server expects it: path in the request
        // line, authority in Host, the body's length.
        let heads = server.heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 6);
        let authority = server.url.split('/').nth(2).unwrap();
        for head in heads {
            assert!(
                head.starts_with("post /v1/chat/completions http/1.1\r\n"),
                "{head}"
            );
            assert!(
                head.contains(&format!("\r\nhost: {authority}\r\n")),
                "{head}"
            );
            assert!(head.contains("\r\ncontent-length: 7\r\n"), "{head}");
        }
    }

    #[tokio::test]
    async fn an_answer_dropped_before_its_end_closes_its_connection() {
        use futures_util::StreamExt;
        use std::sync::atomic::Ordering::SeqCst;
        let server = raw_server(CHUNKED, false).await;
        let client = HttpClient::new();
        let mut stream = post(&client, &server.url).await.bytes_stream();
        assert_eq!(stream.next().await.unwrap().unwrap(), "data: ");
        drop(stream);
        // The provider sees the connection end, and the next request gets
        // a new one: a half-read answer's remainder must never be taken
        // for the next answer.
        for _ in 0..100 {
            if server.ended.load(SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(server.ended.load(SeqCst), 1);
        assert_eq!(
            read_stream(post(&client, &server.url).await).await,
            b"data: onetwo"
        );
        assert_eq!(server.accepted.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_provider_closed_while_idle_is_not_used_again() {
        use std::sync::atomic::Ordering::SeqCst;
        let server = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", true).await;
        let client = HttpClient::new();
        for _ in 0..3 {
            assert_eq!(
                post(&client, &server.url).await.bytes().await.unwrap(),
                "{}"
            );
            // Idle for a moment: the provider's close arrives.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(server.accepted.load(SeqCst), 3);
        // With no request to come, the sweep closes the half-closed socket.
        assert_eq!(client.plain.idle(), 1);
        client.plain.sweep();
        assert_eq!(client.plain.idle(), 0);
    }

    #[tokio::test]
    async fn the_sweep_keeps_open_connections_and_the_host_header_never_carries_credentials() {
        use std::sync::atomic::Ordering::SeqCst;
        let server = raw_server(CHUNKED, false).await;
        let client = HttpClient::new();
        let with_credentials = server.url.replace("http://", "http://user:secret@");
        assert_eq!(
            read_stream(post(&client, &with_credentials).await).await,
            b"data: onetwo"
        );
        client.plain.sweep();
        assert_eq!(
            client.plain.idle(),
            1,
            "an open connection survives the sweep"
        );
        assert_eq!(
            read_stream(post(&client, &server.url).await).await,
            b"data: onetwo"
        );
        assert_eq!(
            server.accepted.load(SeqCst),
            1,
            "and serves the next request"
        );
        let authority = server.url.split('/').nth(2).unwrap();
        let first = server.heads.lock().unwrap()[0].clone();
        assert!(
            first.contains(&format!("\r\nhost: {authority}\r\n")),
            "{first}"
        );
        assert!(!first.contains("secret"), "{first}");
    }
}
