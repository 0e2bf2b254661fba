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
