//! Registered HTTP tools: the gateway calls the tool's URL with the call's
//! arguments (a JSON body for `POST` / `PUT`, query parameters for `GET` /
//! `DELETE`) and the tool's credentials as `Authorization: Bearer`; the
//! agent sees neither the URL's credentials nor the key. The URL is checked
//! against the platform's egress allow-list before every call, as a
//! provider's is, and redirects are not followed.

use super::{Failure, Failure::*};
use crate::http_client::{CallError, HttpClient};
use axum::http::{Method, Uri};
use palisade_policy::{Egress, HttpMethod, HttpTool};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// What the call returned: the HTTP status and the body.
pub(crate) struct HttpAnswer {
    pub status: u16,
    pub body: axum::body::Bytes,
}

pub(crate) async fn run(
    http: &HttpClient,
    egress: &Egress,
    tool: &HttpTool,
    arguments: &Map<String, Value>,
) -> Result<HttpAnswer, Failure> {
    egress
        .check_url(&tool.url, tool.credentials.is_some())
        .map_err(|e| Failed(format!("the tool's URL is not allowed: {e}")))?;
    let (method, uri, body) = match tool.method {
        HttpMethod::Post | HttpMethod::Put => (
            if tool.method == HttpMethod::Post {
                Method::POST
            } else {
                Method::PUT
            },
            tool.url.clone(),
            Some(serde_json::to_vec(arguments).unwrap_or_default()),
        ),
        HttpMethod::Get | HttpMethod::Delete => (
            if tool.method == HttpMethod::Get {
                Method::GET
            } else {
                Method::DELETE
            },
            with_query(&tool.url, arguments),
            None,
        ),
    };
    let uri: Uri = uri
        .parse()
        .map_err(|e| Failed(format!("the tool's URL cannot be used: {e}")))?;
    let mut headers = vec![("accept", "application/json".to_owned())];
    if let Some(key) = &tool.credentials {
        headers.push(("authorization", format!("Bearer {}", key.expose())));
    }
    let timeout = Duration::from_millis(tool.timeout_ms);
    let max = usize::try_from(tool.max_response_bytes).unwrap_or(usize::MAX);
    let answered = async {
        let response = http.send(method, uri, &headers, body, timeout).await?;
        let status = response.status.as_u16();
        Ok::<_, CallError>(HttpAnswer {
            status,
            body: response.bytes_at_most(max).await?,
        })
    };
    answered.await.map_err(|e| match e {
        CallError::Timeout => Timeout(format!("the tool did not answer within {timeout:?}")),
        CallError::TooLarge => TooLarge(format!(
            "the tool's answer is larger than {max} bytes (maxResponseBytes)"
        )),
        CallError::Connect(e) => Failed(format!("the tool cannot be reached: {e}")),
    })
}

/// `url` with each argument as a query parameter (strings as they are,
/// anything else as JSON).
fn with_query(url: &str, arguments: &Map<String, Value>) -> String {
    if arguments.is_empty() {
        return url.to_owned();
    }
    let pairs: Vec<String> = arguments
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            format!("{}={}", encode(k), encode(&v))
        })
        .collect();
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}{}", pairs.join("&"))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The answer as a result: the status, and the body as JSON when it is
/// JSON, as text otherwise (binary content becomes a marker later).
pub(crate) fn result(answer: &HttpAnswer, body: Value) -> Value {
    json!({"status": answer.status, "body": body})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_become_encoded_query_parameters() {
        let args = json!({"q": "a b&c", "n": 3});
        let url = with_query("https://t.example/search", args.as_object().unwrap());
        assert_eq!(url, "https://t.example/search?n=3&q=a%20b%26c");
        let url = with_query("https://t.example/s?x=1", args.as_object().unwrap());
        assert!(url.starts_with("https://t.example/s?x=1&n=3"));
    }
}
