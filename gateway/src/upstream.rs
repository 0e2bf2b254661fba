//! The HTTP client the gateway calls providers with: hyper's pooled client
//! over rustls (HTTP/1.1, or HTTP/2 where the provider offers it by ALPN),
//! trusting the system's root certificates. It does what a proxy needs
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
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

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
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// An answer whose headers arrived; its body is read within the same
/// deadline.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    body: Incoming,
    deadline: Instant,
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
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Self { inner }
    }

    /// POSTs `body` as JSON with `headers` to `uri`; `timeout` covers the
    /// answer's headers and, through [`Answer`], its body.
    pub async fn post_json(
        &self,
        uri: Uri,
        headers: &[(&str, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Answer, CallError> {
        let deadline = Instant::now() + timeout;
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let h = request.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| CallError::Connect(format!("header {name}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| CallError::Connect(format!("header {name}: {e}")))?;
            h.insert(name, value);
        }
        match tokio::time::timeout_at(deadline, self.inner.request(request)).await {
            Err(_) => Err(CallError::Timeout),
            Ok(Err(e)) => Err(failure(&e)),
            Ok(Ok(response)) => Ok(Answer {
                status: response.status(),
                body: response.into_body(),
                deadline,
            }),
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

impl Answer {
    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, CallError> {
        let limited = http_body_util::Limited::new(self.body, MAX_ANSWER_BYTES);
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
    body: Option<Incoming>,
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
    #![allow(clippy::unwrap_used)]
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
}
