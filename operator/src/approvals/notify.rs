//! Notifications about held calls (an AIPolicy's `spec.approvals.notify`):
//! a Slack-compatible JSON POST to a webhook whose URL is in a Secret, when
//! an Approval is created ([`Notification::Requested`]) and again shortly
//! before it expires undecided ([`Notification::Expiring`]). Each is sent
//! once (recorded in `status.notified`), retried a few times, and never
//! carries the call's arguments: only who, what, which rule, the digest,
//! the deadline and the command to look and decide.
//!
//! When a notification is due is pure ([`due`], [`next_due`]); the payload
//! too ([`payload`]); [`Webhook`] reads the URL and posts.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use palisade_crds::duration::parse_duration;
use palisade_crds::{AIPolicy, Approval, ApprovalPhase, Notification, labels};
use serde_json::{Value, json};
use std::time::Duration;

/// How many times a notification is tried, and how long each try may take.
const ATTEMPTS: u32 = 3;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a policy asks for: the webhook and how early the reminder goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub before_expiry: Duration,
}

/// The notification due for `a` at `now` in phase `phase`, if any: the
/// request once, while pending; the reminder once, while still pending
/// within `before_expiry` of the deadline (never when that window starts
/// at or before the request: the first message said as much).
pub fn due(
    a: &Approval,
    phase: ApprovalPhase,
    sent: &[Notification],
    before_expiry: Duration,
    now: Timestamp,
) -> Option<Notification> {
    if phase != ApprovalPhase::Pending {
        return None;
    }
    if !sent.contains(&Notification::Requested) {
        return Some(Notification::Requested);
    }
    let remind_at = reminder_at(a, before_expiry)?;
    (!sent.contains(&Notification::Expiring) && now >= remind_at).then_some(Notification::Expiring)
}

/// When the next notification falls due after `now`, if one still can.
pub fn next_due(a: &Approval, sent: &[Notification], before_expiry: Duration) -> Option<Timestamp> {
    if sent.contains(&Notification::Expiring) {
        return None;
    }
    reminder_at(a, before_expiry)
}

fn reminder_at(a: &Approval, before_expiry: Duration) -> Option<Timestamp> {
    let lead = SignedDuration::try_from(before_expiry).ok()?;
    if lead.is_zero() {
        return None;
    }
    let at = a.spec.expires_at.0.checked_sub(lead).ok()?;
    (at > a.spec.requested_at.0).then_some(at)
}

/// The JSON posted: Slack's `text` (what a Slack or Mattermost incoming
/// webhook shows), and the same facts as fields under `palisade` for
/// anything else. No arguments, not even the redacted preview.
pub fn payload(a: &Approval, kind: Notification) -> Value {
    let call = &a.spec.call;
    let namespace = a.namespace().unwrap_or_default();
    let name = a.name_any();
    let rule = call
        .rule
        .as_deref()
        .unwrap_or("(a ToolGrant or the policy)");
    let expires = a.spec.expires_at.0;
    let headline = match kind {
        Notification::Requested => format!(
            "Palisade: agent {} in {namespace} wants to run {} (policy {}, rule {rule}); decide before {expires}.",
            call.agent, call.tool, call.policy
        ),
        Notification::Expiring => format!(
            "Palisade: still undecided, expires at {expires}: agent {} in {namespace} wants to run {} (policy {}, rule {rule}).",
            call.agent, call.tool, call.policy
        ),
    };
    let text = format!(
        "{headline}\nSee it: kubectl palisade show {name} -n {namespace}\nDecide: kubectl palisade approve {name} -n {namespace} --reason \"...\" (or deny)"
    );
    json!({
        "text": text,
        "palisade": {
            "event": kind.as_str(),
            "namespace": namespace,
            "approval": name,
            "agent": call.agent,
            "tool": call.tool,
            "policy": call.policy,
            "rule": call.rule,
            "argumentsDigest": call.arguments_digest,
            "requestId": call.request_id,
            "expiresAt": expires.to_string(),
        }
    })
}

/// Why a notification could not be sent (for the Warning Event).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Secret {name} (key {key}) named by spec.approvals.notify.webhookSecretRef {problem}")]
    Secret {
        name: String,
        key: String,
        problem: &'static str,
    },
    #[error("spec.approvals.notify.beforeExpiry: {0}")]
    BeforeExpiry(String),
    #[error("the webhook URL in the Secret is not an http:// or https:// URL")]
    BadUrl,
    #[error("the webhook did not take it after {ATTEMPTS} tries: {0}")]
    Refused(String),
}

/// Reads webhooks' URLs and posts to them.
#[derive(Clone)]
pub struct Webhook {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Webhook")
    }
}

impl Default for Webhook {
    fn default() -> Self {
        Self::new()
    }
}

impl Webhook {
    /// HTTPS verified against the system's root certificates (none
    /// installed: only plain-HTTP webhooks work, and the log says so).
    pub fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let https = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no system root certificates: HTTPS webhooks will fail");
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                )
            }
        }
        .https_or_http()
        .enable_http1()
        .build();
        Self {
            client: Client::builder(TokioExecutor::new()).build(https),
        }
    }

    /// The policy's notification target, if it asks for one.
    pub async fn target(
        &self,
        client: &kube::Client,
        namespace: &str,
        policy: &str,
    ) -> Result<Option<Target>, NotifyError> {
        // A policy deleted since the call was held asks for nothing.
        let Some(p) = Api::<AIPolicy>::namespaced(client.clone(), namespace)
            .get_opt(policy)
            .await?
        else {
            return Ok(None);
        };
        let Some(notify) = p.spec.approvals.notify else {
            return Ok(None);
        };
        let before_expiry =
            parse_duration(&notify.before_expiry).map_err(NotifyError::BeforeExpiry)?;
        let r = &notify.webhook_secret_ref;
        let problem = |problem| NotifyError::Secret {
            name: r.name.clone(),
            key: r.key.clone(),
            problem,
        };
        let secret = Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(&r.name)
            .await?
            .ok_or_else(|| problem("does not exist"))?;
        if secret.labels().get(labels::CREDENTIALS).map(String::as_str)
            != Some(labels::CREDENTIALS_OPT_IN)
        {
            return Err(problem(
                "lacks the label palisade.dev/credentials: \"true\"",
            ));
        }
        let url = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&r.key))
            .ok_or_else(|| problem("has no such key"))?;
        let url = String::from_utf8_lossy(&url.0).trim().to_owned();
        Ok(Some(Target { url, before_expiry }))
    }

    /// Posts `body` to `url`: up to [`ATTEMPTS`] tries, 1 s then 2 s
    /// apart; any 2xx answer is taken.
    pub async fn post(&self, url: &str, body: &Value) -> Result<(), NotifyError> {
        let uri: hyper::Uri = url.parse().map_err(|_| NotifyError::BadUrl)?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(NotifyError::BadUrl);
        }
        let body = Bytes::from(body.to_string());
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
            }
            let request = hyper::Request::post(uri.clone())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()));
            let request = match request {
                Ok(r) => r,
                Err(_) => return Err(NotifyError::BadUrl),
            };
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(request)).await {
                Ok(Ok(answer)) if answer.status().is_success() => {
                    // Read (and drop) the answer so the connection is reused.
                    let _ =
                        tokio::time::timeout(ATTEMPT_TIMEOUT, answer.into_body().collect()).await;
                    return Ok(());
                }
                Ok(Ok(answer)) => last = format!("HTTP {}", answer.status().as_u16()),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
            }
        }
        Err(NotifyError::Refused(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use palisade_crds::{ApprovalSpec, HeldCall};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn approval() -> Approval {
        let mut a = Approval::new(
            "intake-0a1b",
            ApprovalSpec {
                call: HeldCall {
                    agent: "intake".into(),
                    tool: "send_email".into(),
                    arguments_preview: "{\"to\": \"patient@example.org\"}".into(),
                    arguments_truncated: false,
                    arguments_digest: format!("sha256:{}", "0".repeat(64)),
                    request_id: "r-1".into(),
                    policy: "clinic".into(),
                    policy_generation: 3,
                    rule: Some("emails-need-approval".into()),
                    requested_by: None,
                },
                arguments: None,
                requested_at: Time(t("2026-11-22T10:00:00Z")),
                expires_at: Time(t("2026-11-22T10:15:00Z")),
                decision: None,
                reason: None,
                decided_by: None,
            },
        );
        a.metadata.namespace = Some("clinic".into());
        a
    }

    #[test]
    fn the_request_goes_once_then_the_reminder_once_near_the_deadline() {
        let a = approval();
        let two = Duration::from_secs(120);
        let pending = ApprovalPhase::Pending;
        let early = t("2026-11-22T10:01:00Z");
        assert_eq!(
            due(&a, pending, &[], two, early),
            Some(Notification::Requested)
        );
        let sent = [Notification::Requested];
        assert_eq!(due(&a, pending, &sent, two, early), None);
        assert_eq!(next_due(&a, &sent, two), Some(t("2026-11-22T10:13:00Z")));
        let late = t("2026-11-22T10:13:00Z");
        assert_eq!(
            due(&a, pending, &sent, two, late),
            Some(Notification::Expiring)
        );
        let both = [Notification::Requested, Notification::Expiring];
        assert_eq!(due(&a, pending, &both, two, late), None);
        assert_eq!(next_due(&a, &both, two), None);
        // Decided, or expired: nothing more to say.
        for phase in [
            ApprovalPhase::Approved,
            ApprovalPhase::Denied,
            ApprovalPhase::Expired,
        ] {
            assert_eq!(due(&a, phase, &[], two, late), None, "{phase:?}");
        }
        // No reminder when it would come before (or with) the request, or
        // when switched off with 0s.
        assert_eq!(next_due(&a, &sent, Duration::from_secs(15 * 60)), None);
        assert_eq!(next_due(&a, &sent, Duration::ZERO), None);
    }

    #[test]
    fn the_payload_names_the_call_and_how_to_decide_but_never_its_arguments() {
        let body = payload(&approval(), Notification::Requested).to_string();
        for expected in [
            "intake",
            "send_email",
            "emails-need-approval",
            "kubectl palisade show intake-0a1b -n clinic",
            "2026-11-22T10:15:00Z",
        ] {
            assert!(body.contains(expected), "{expected} missing: {body}");
        }
        assert!(!body.contains("patient@example.org"), "{body}");
        let reminder = payload(&approval(), Notification::Expiring);
        assert_eq!(reminder["palisade"]["event"], "Expiring");
        assert!(
            reminder["text"]
                .as_str()
                .is_some_and(|t| t.contains("still undecided"))
        );
    }
}
