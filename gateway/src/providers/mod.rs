//! Talking to model providers, one module per wire protocol. Whatever the
//! provider speaks, the rest of the gateway sees OpenAI's shapes
//! ([`openai`]): a chat completion, or an SSE stream of
//! `chat.completion.chunk`s ending in `[DONE]` ([`framing`]).
//!
//! - OpenAI or any OpenAI-compatible server: the request passed through
//!   with the routed model;
//! - [`ollama`]: Ollama's native `/api/chat` (NDJSON streaming), translated;
//! - [`anthropic`]: the Messages API (SSE), translated;
//! - with `toolCalling: Prompt`, any of them for models without tool
//!   support: tools described in the prompt, calls read from the reply
//!   ([`prompt_tools`]).
//!
//! Beside chat: [`models`] (each protocol's model list) and [`embeddings`]
//! (OpenAI's passed through, Ollama's `/api/embed` translated).
//!
//! Requests go out through [`crate::http_client`] (pooled, no redirects,
//! one deadline per call), and only to URLs the platform's [`Egress`]
//! allows (credentials only over `https://` unless it says otherwise),
//! checked on the parsed URL just before connecting. A refusal's body is
//! never passed on as it came ([`refusal`]).

pub mod anthropic;
pub mod embeddings;
pub mod framing;
pub mod models;
pub mod ollama;
pub mod openai;
pub mod prompt_tools;
pub mod refusal;
pub mod usage;

use crate::http_client::{CallError, HttpClient, UpstreamResponse};
use axum::body::Bytes;
use axum::http::Uri;
use framing::ByteStream;
use futures_util::StreamExt;
use openai::{ChatCompletion, ChatRequest, Outgoing};
use palisade_policy::{Egress, EgressRefusal, PolicyBundle, Provider, ProviderKind, ToolCalling};
use refusal::Refusal;
use std::collections::HashMap;
use std::time::Duration;

/// Why a provider call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("unreachable: {0}")]
    Connect(String),
    #[error("no answer within the timeout")]
    Timeout,
    /// 5xx: retryable.
    #[error("HTTP {0}")]
    Server(u16),
    /// 4xx: the client's problem; its status, and the provider's message
    /// sanitised.
    #[error("refused the request with HTTP {0}")]
    Client(u16, Refusal),
    /// The provider's URL is not one the platform allows (or would carry
    /// credentials over plain `http://`): not connected to.
    #[error("not connected to: {0}")]
    NotAllowed(EgressRefusal),
    /// The provider answered something that is not what its API promises.
    #[error("answered something unexpected: {0}")]
    Invalid(String),
    /// The provider's protocol has no such API (Anthropic: embeddings).
    #[error("its API has no {} endpoint", .0.as_str())]
    Unsupported(Api),
}

impl UpstreamError {
    /// Whether the policy's fallback provider should be tried.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Timeout | Self::Server(_))
    }

    /// The provider's HTTP status, if it answered one.
    pub fn status(&self) -> Option<i64> {
        match self {
            Self::Server(s) | Self::Client(s, _) => Some(i64::from(*s)),
            _ => None,
        }
    }
}

impl From<CallError> for UpstreamError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Timeout => Self::Timeout,
            CallError::Connect(why) => Self::Connect(why),
            CallError::TooLarge => Self::Invalid(e.to_string()),
        }
    }
}

/// A provider's reply, in OpenAI's shapes.
pub enum ProviderReply {
    /// A completion, to be gated.
    Completion(ChatCompletion),
    /// An OpenAI completion object with nothing to gate (no tool calls), as
    /// the provider sent it: passed on without parsing it into a tree and
    /// writing it out again.
    Verbatim(Bytes),
    /// OpenAI SSE bytes (`data: {...}\n\n` ... `data: [DONE]\n\n`).
    Stream(ByteStream),
}

impl ProviderReply {
    /// The whole completion (read from its bytes if passed on verbatim);
    /// a stream is not one.
    pub fn into_completion(self) -> Result<ChatCompletion, UpstreamError> {
        match self {
            Self::Completion(c) => Ok(c),
            Self::Verbatim(bytes) => parse(&bytes),
            Self::Stream(_) => Err(UpstreamError::Invalid(
                "a stream, where a whole answer was asked for".into(),
            )),
        }
    }
}

impl std::fmt::Debug for ProviderReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Completion(c) => f.debug_tuple("Completion").field(c).finish(),
            Self::Verbatim(b) => f.debug_tuple("Verbatim").field(b).finish(),
            Self::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

fn url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    match path.strip_prefix("/v1") {
        Some(rest) if base.ends_with("/v1") => format!("{base}{rest}"),
        _ => format!("{base}{path}"),
    }
}

/// What a request asks a provider for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    Chat,
    Embeddings,
    Models,
}

impl Api {
    const ALL: [Api; 3] = [Api::Chat, Api::Embeddings, Api::Models];

    /// Its name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Embeddings => "embeddings",
            Api::Models => "models",
        }
    }

    /// The path of this API on a provider of `kind`; `None` where its
    /// protocol has none (Anthropic has no embeddings).
    fn path(self, kind: ProviderKind) -> Option<&'static str> {
        Some(match (kind, self) {
            (ProviderKind::OpenAi, Api::Chat) => "/v1/chat/completions",
            (ProviderKind::OpenAi, Api::Embeddings) => "/v1/embeddings",
            (ProviderKind::OpenAi, Api::Models) => "/v1/models",
            (ProviderKind::Anthropic, Api::Models) => "/v1/models?limit=1000",
            (ProviderKind::Ollama, Api::Chat) => "/api/chat",
            (ProviderKind::Ollama, Api::Embeddings) => "/api/embed",
            (ProviderKind::Ollama, Api::Models) => "/api/tags",
            (ProviderKind::Anthropic, Api::Chat) => "/v1/messages",
            (ProviderKind::Anthropic, Api::Embeddings) => return None,
        })
    }
}

/// The endpoint of `api` on `provider`: its base URL and the API's path.
fn endpoint(provider: &Provider, api: Api) -> Option<String> {
    Some(url(&provider.base_url, api.path(provider.kind)?))
}

/// Every provider's endpoints, parsed once per configuration: parsing
/// a URL per request (host name normalisation included) was ~2% of the
/// gateway's CPU. Part of the [`crate::snapshot::Snapshot`]. Found by
/// the provider's base URL, its protocol and the API, so that a request
/// builds no URL to look one up.
#[derive(Debug, Default)]
pub struct Endpoints(HashMap<String, HashMap<(ProviderKind, Api), Uri>>);

impl Endpoints {
    pub fn of(bundle: &PolicyBundle) -> Self {
        let mut parsed: HashMap<String, HashMap<(ProviderKind, Api), Uri>> = HashMap::new();
        for p in bundle.policies().iter().flat_map(|p| &p.providers) {
            for api in Api::ALL {
                if let Some(uri) = endpoint(p, api).and_then(|e| e.parse::<Uri>().ok()) {
                    parsed
                        .entry(p.base_url.clone())
                        .or_default()
                        .insert((p.kind, api), uri);
                }
            }
        }
        Self(parsed)
    }

    /// `provider`'s endpoint for `api`; one the configuration did not
    /// parse (it cannot happen: the compiler checks base URLs) is parsed
    /// here, and an unparsable one is a connect error naming it.
    fn get(&self, provider: &Provider, api: Api) -> Result<Uri, UpstreamError> {
        if let Some(u) = self
            .0
            .get(provider.base_url.as_str())
            .and_then(|apis| apis.get(&(provider.kind, api)))
        {
            return Ok(u.clone());
        }
        let Some(e) = endpoint(provider, api) else {
            return Err(UpstreamError::Unsupported(api));
        };
        e.parse::<Uri>().map_err(|err| {
            UpstreamError::Connect(format!(
                "provider {}: base URL {e} is not a URL: {err}",
                provider.name
            ))
        })
    }
}

/// How to reach the providers: the shared HTTP client (its connection
/// pools) and the configuration's parsed endpoints.
#[derive(Debug)]
pub struct Upstream<'a> {
    pub http: &'a HttpClient,
    pub endpoints: &'a Endpoints,
    /// Where the gateway may connect, checked before every call.
    pub egress: &'a Egress,
}

impl Upstream<'_> {
    /// POSTs `body` to `provider`'s `api` endpoint; a 2xx answer, or why not.
    async fn post(
        &self,
        provider: &Provider,
        api: Api,
        body: &impl serde::Serialize,
        headers: &[(&str, String)],
    ) -> Result<UpstreamResponse, UpstreamError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| UpstreamError::Invalid(format!("cannot encode the request: {e}")))?;
        let uri = self.endpoint(provider, api)?;
        let timeout = Duration::from_millis(provider.timeout_ms);
        let headers = traced(headers);
        let r = self.http.post_json(uri, &headers, body, timeout).await?;
        answer(provider, r).await
    }

    /// GETs `provider`'s `api` endpoint; a 2xx answer, or why not.
    async fn get(
        &self,
        provider: &Provider,
        api: Api,
        headers: &[(&str, String)],
    ) -> Result<UpstreamResponse, UpstreamError> {
        let uri = self.endpoint(provider, api)?;
        let timeout = Duration::from_millis(provider.timeout_ms);
        let headers = traced(headers);
        answer(provider, self.http.get(uri, &headers, timeout).await?).await
    }

    /// The URL of `provider`'s `api`, if the platform allows connecting to it.
    fn endpoint(&self, provider: &Provider, api: Api) -> Result<Uri, UpstreamError> {
        let uri = self.endpoints.get(provider, api)?;
        self.egress
            .check(
                format_args!(
                    "{}://{}",
                    uri.scheme_str().unwrap_or(""),
                    uri.authority().map_or("", |a| a.as_str())
                ),
                uri.scheme_str().unwrap_or(""),
                uri.host().unwrap_or(""),
                uri.port_u16(),
                provider.api_key.is_some(),
            )
            .map_err(UpstreamError::NotAllowed)?;
        Ok(uri)
    }

    /// Sends an OpenAI-shaped chat request to `provider` asking for
    /// `model` (with its tools in the prompt, for a provider whose
    /// `toolCalling` is `Prompt`: [`prompt_tools`]).
    pub async fn call(
        &self,
        provider: &Provider,
        model: &str,
        request: &ChatRequest,
    ) -> Result<ProviderReply, UpstreamError> {
        if provider.tool_calling == ToolCalling::Prompt && prompt_tools::applies(request) {
            return prompt_tools::call(self, provider, model, request).await;
        }
        self.call_native(provider, model, request).await
    }

    /// [`Self::call`] through the provider's own API.
    async fn call_native(
        &self,
        provider: &Provider,
        model: &str,
        request: &ChatRequest,
    ) -> Result<ProviderReply, UpstreamError> {
        let stream = request.streamed();
        match provider.kind {
            ProviderKind::OpenAi => {
                let body = Outgoing::new(model, request);
                let r = self
                    .post(provider, Api::Chat, &body, &credentials(provider))
                    .await?;
                if stream {
                    return Ok(ProviderReply::Stream(r.bytes_stream().boxed()));
                }
                let bytes = r.bytes().await?;
                Ok(if verbatim(&bytes) {
                    ProviderReply::Verbatim(bytes)
                } else {
                    ProviderReply::Completion(parse(&bytes)?)
                })
            }
            ProviderKind::Ollama => {
                let body = ollama::request(request, model);
                let r = self
                    .post(provider, Api::Chat, &body, &credentials(provider))
                    .await?;
                Ok(if stream {
                    ProviderReply::Stream(ollama::stream(r.bytes_stream(), model.to_owned()))
                } else {
                    ProviderReply::Completion(ollama::completion(parse(&r.bytes().await?)?, model))
                })
            }
            ProviderKind::Anthropic => {
                let body = anthropic::request(request, model);
                let r = self
                    .post(provider, Api::Chat, &body, &credentials(provider))
                    .await?;
                Ok(if stream {
                    ProviderReply::Stream(anthropic::stream(r.bytes_stream(), model.to_owned()))
                } else {
                    ProviderReply::Completion(anthropic::completion(
                        parse(&r.bytes().await?)?,
                        model,
                    ))
                })
            }
        }
    }
}

/// `headers` and, if the request is traced (or the agent sent one), the
/// `traceparent` the provider continues the trace with.
fn traced<'h>(headers: &'h [(&'h str, String)]) -> std::borrow::Cow<'h, [(&'h str, String)]> {
    match crate::telemetry::traceparent() {
        None => std::borrow::Cow::Borrowed(headers),
        Some(t) => {
            let mut all = headers.to_vec();
            all.push(("traceparent", t));
            std::borrow::Cow::Owned(all)
        }
    }
}

/// A 2xx answer, or why not: 5xx retryable, redirects not followed, a
/// 4xx with the provider's message sanitised.
async fn answer(
    provider: &Provider,
    r: UpstreamResponse,
) -> Result<UpstreamResponse, UpstreamError> {
    let s = r.status;
    if s.is_server_error() {
        Err(UpstreamError::Server(s.as_u16()))
    } else if s.is_redirection() {
        Err(UpstreamError::Invalid(format!(
            "HTTP {s} (redirects are not followed: set the provider's baseUrl to where it points)"
        )))
    } else if !s.is_success() {
        let body = r.bytes().await.unwrap_or_default();
        let key = provider.api_key.as_ref().map(|k| k.expose());
        Err(UpstreamError::Client(
            s.as_u16(),
            Refusal::from_body(&body, key),
        ))
    } else {
        Ok(r)
    }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, UpstreamError> {
    serde_json::from_slice(bytes)
        .map_err(|e| UpstreamError::Invalid(format!("not the expected JSON: {e}")))
}

/// An OpenAI completion that can be passed on verbatim: a well-formed JSON
/// object that mentions no tool calls, legacy `function_call` included
/// (nothing to gate), and no `palisade`
/// key (which the gateway adds).
fn verbatim(bytes: &[u8]) -> bool {
    let mentions = |needle: &[u8]| memchr::memmem::find(bytes, needle).is_some();
    bytes.trim_ascii_start().first() == Some(&b'{')
        && !openai::may_hold_tool_calls(bytes)
        && !mentions(b"\"palisade\"")
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// The headers that carry the provider's credentials (and Anthropic's
/// API version): `Authorization: Bearer <key>`, or Anthropic's
/// `x-api-key`; none without a key.
fn credentials(provider: &Provider) -> Vec<(&'static str, String)> {
    let key = provider.api_key.iter().map(|k| k.expose());
    match provider.kind {
        ProviderKind::Anthropic => {
            std::iter::once(("anthropic-version", anthropic::VERSION.into()))
                .chain(key.map(|k| ("x-api-key", k.to_owned())))
                .collect()
        }
        ProviderKind::OpenAi | ProviderKind::Ollama => key
            .map(|k| ("authorization", format!("Bearer {k}")))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_objects_without_tool_calls_pass_verbatim() {
        let plain = br#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#;
        assert!(verbatim(plain));
        assert!(verbatim(b"  {}"));
        let calls = br#"{"choices":[{"message":{"tool_calls":[{"id":"1"}]}}]}"#;
        assert!(!verbatim(calls), "tool calls must be gated");
        let legacy = br#"{"choices":[{"message":{"function_call":{"name":"rm"}}}]}"#;
        assert!(!verbatim(legacy), "legacy function calls must be gated");
        // A key written with a JSON escape is the same key to every parser.
        let escaped = br#"{"choices":[{"message":{"tool\u005fcalls":[{"id":"1"}]}}]}"#;
        assert!(
            !verbatim(escaped),
            "an escaped tool_calls key must be gated"
        );
        assert!(
            !verbatim(br#"{"palisade":1}"#),
            "the gateway's own key is not taken over"
        );
        assert!(!verbatim(br#"{"id":"c","#), "not JSON");
        assert!(!verbatim(b"[1]"), "not an object");
        assert!(!verbatim(br#"{"a":1} trailing"#));
    }

    #[test]
    fn endpoints_are_parsed_once_per_configuration_and_bad_ones_named() {
        let yaml = r#"
apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {name: p}
spec:
  agents: [{name: a, serviceAccount: a}]
  providers:
    - {name: vllm, type: openai, baseUrl: "http://vllm:8000/v1/"}
    - {name: local, type: ollama, baseUrl: "http://ollama:11434"}
    - {name: claude, type: anthropic, baseUrl: "https://api.anthropic.com"}
  routing: {defaultProvider: vllm}
"#;
        let bundle = crate::snapshot::bundle_of(yaml);
        let endpoints = Endpoints::of(&bundle);
        let providers = &bundle.policies()[0].providers;
        let got: Vec<String> = providers
            .iter()
            .map(|p| endpoints.get(p, Api::Chat).unwrap().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "http://vllm:8000/v1/chat/completions",
                "http://ollama:11434/api/chat",
                "https://api.anthropic.com/v1/messages"
            ]
        );
        assert_eq!(
            endpoints.0.values().map(HashMap::len).sum::<usize>(),
            8,
            "every API of every provider parsed up front (Anthropic has no embeddings)"
        );

        // A provider the configuration did not hold: parsed on the spot,
        // or refused naming the provider and its URL.
        let mut stray = providers[0].clone();
        stray.base_url = "http://other:9".into();
        assert_eq!(
            endpoints.get(&stray, Api::Chat).unwrap().to_string(),
            "http://other:9/v1/chat/completions"
        );
        stray.base_url = "not a url".into();
        let Err(UpstreamError::Connect(message)) = endpoints.get(&stray, Api::Chat) else {
            panic!("a bad base URL is a connect error");
        };
        assert!(
            message.contains("provider vllm") && message.contains("not a url"),
            "{message}"
        );
    }

    #[test]
    fn base_urls_with_or_without_v1_both_work() {
        assert_eq!(
            url("https://api.openai.com", "/v1/chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            url("http://vllm:8000/v1/", "/v1/chat/completions"),
            "http://vllm:8000/v1/chat/completions"
        );
        assert_eq!(
            url("http://ollama:11434", "/api/chat"),
            "http://ollama:11434/api/chat"
        );
    }
}
