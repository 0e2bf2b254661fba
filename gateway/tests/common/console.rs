//! The policy and tokens the console's tests share (`console.rs`,
//! `console_browser.rs`): agent `app` (read_file allowed, send_email held,
//! everything else denied) and agent `other`, suspended; the auditor and
//! operator `oncall` log in with the tokens here.

pub const KEY: &str = "console-agent-key";
pub const AUDITOR: &str = "console-auditor-token";
pub const OPERATOR: &str = "console-operator-token";

pub fn config(model: &str, settings: &str) -> String {
    format!(
        r#"apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {{name: clinic}}
spec:
  agents:
    - {{name: app, apiKeySecretRef: {{name: keys, key: a}}}}
    - {{name: other, apiKeySecretRef: {{name: keys, key: b}}, suspended: true}}
  providers: [{{name: local, type: openai, baseUrl: "{model}"}}]
  routing: {{defaultProvider: local}}
  tools:
    default: Deny
    rules:
      - {{name: reads, tools: [read_file], action: Allow}}
      - {{name: mail, tools: [send_email], action: RequireApproval}}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{a: {KEY}, b: other-key}}
---
apiVersion: palisade.dev/v1alpha1
kind: GatewaySettings
metadata: {{name: local}}
spec:
{settings}"#
    )
}

pub const ON: &str = "  console: {enabled: true}
  audit: {readTokenEnv: PALISADE_AUDITOR}
  approvals:
    operators: [{name: oncall, tokenEnv: PALISADE_ONCALL}]
";

/// Settings with the console on: the auditor token and operator `oncall`
/// from `PALISADE_AUDITOR` and `PALISADE_ONCALL`.
pub fn env() -> [(&'static str, &'static str); 2] {
    [("PALISADE_AUDITOR", AUDITOR), ("PALISADE_ONCALL", OPERATOR)]
}

/// Logs in to the console at `url` with `token` (`http` must not follow
/// redirects): the session cookie, as `name=value`.
pub async fn login(http: &reqwest::Client, url: &str, token: &str) -> String {
    let resp = http
        .post(format!("{url}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

/// The first form's CSRF value on a console page.
pub fn csrf_in(page: &str) -> Option<String> {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .map(|s| s.split('"').next().unwrap_or_default().to_owned())
}

/// The real binary on [`config`] with `settings`, written in a test
/// directory named `name`, with the console's tokens in its environment;
/// the process (killed when dropped) and its base URL.
pub fn start(name: &str, model: &str, settings: &str) -> (super::Stopped, String) {
    let dir = palisade_testkit::temp_dir(name);
    let path = dir.join("policy.yaml");
    std::fs::write(&path, config(model, settings)).unwrap();
    super::run_config(&path, &[], &env())
}
