//! Security alerts: what a policy's `spec.security.alerts` sets (the
//! thresholds, each with a default) and the one heuristic that needs no
//! history, the shapes of attacks in a tool call's arguments. The
//! heuristics over an agent's history (bursts, repeats, new tools, token
//! jumps) keep their state in the gateway (`gateway/src/security/`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an alert is about: its reason code is `alert.<as_str>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// `../`, its encodings, or a sensitive absolute path in an argument.
    PathTraversal,
    /// SQL injection shapes (`' OR 1=1`, `UNION SELECT`, stacked
    /// `; DROP`, comment tails) in an argument.
    SqlInjection,
    /// More denials of one agent than `denialBurst.count` within its window.
    DenialBurst,
    /// The same call (tool and arguments) held again and again.
    RepeatedHeldCall,
    /// A tool the agent had not called before, once it is past its first
    /// `newToolAfter` decisions.
    NewTool,
    /// A request with many times the agent's usual tokens.
    TokenJump,
}

impl AlertKind {
    pub const ALL: [Self; 6] = [
        Self::PathTraversal,
        Self::SqlInjection,
        Self::DenialBurst,
        Self::RepeatedHeldCall,
        Self::NewTool,
        Self::TokenJump,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PathTraversal => "path_traversal",
            Self::SqlInjection => "sql_injection",
            Self::DenialBurst => "denial_burst",
            Self::RepeatedHeldCall => "repeated_held_call",
            Self::NewTool => "new_tool",
            Self::TokenJump => "token_jump",
        }
    }

    /// `alert.path_traversal`, ...: the audit row's reason code.
    pub fn reason_code(self) -> String {
        format!("alert.{}", self.as_str())
    }
}

/// `count` events within `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Burst {
    pub count: u32,
    pub window_secs: u64,
}

/// A policy's alert thresholds (`spec.security.alerts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecuritySettings {
    /// Alerts at all (default true).
    pub enabled: bool,
    /// Look for attack shapes in tool arguments (default true).
    pub argument_shapes: bool,
    /// Default: 10 denials in 60 s.
    pub denial_burst: Burst,
    /// Default: the same call held 3 times in 600 s.
    pub repeated_held_call: Burst,
    /// Decisions an agent makes before its tools are known (default 50);
    /// 0: never alert on new tools.
    pub new_tool_after: u32,
    /// A request with more than `token_jump_factor` times the agent's
    /// average tokens (default 10), once it made `token_jump_min_requests`
    /// (default 20) and the request has at least `token_jump_min_tokens`
    /// (default 1000).
    pub token_jump_factor: f64,
    pub token_jump_min_requests: u32,
    pub token_jump_min_tokens: u64,
    /// The same alert for the same agent is raised at most once in this
    /// many seconds (default 60); the rest are only counted.
    pub cooldown_secs: u64,
    /// Alerts that quarantine the agent (suspend it until a human lifts
    /// it); default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantine_on: Vec<AlertKind>,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            argument_shapes: true,
            denial_burst: Burst {
                count: 10,
                window_secs: 60,
            },
            repeated_held_call: Burst {
                count: 3,
                window_secs: 600,
            },
            new_tool_after: 50,
            token_jump_factor: 10.0,
            token_jump_min_requests: 20,
            token_jump_min_tokens: 1000,
            cooldown_secs: 60,
            quarantine_on: Vec::new(),
        }
    }
}

impl SecuritySettings {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The attack shapes in `arguments` (every string, at any depth, and the
/// keys): each kind once, with where it was seen (`path`, `files[0].name`;
/// never the value, which may be anything the agent sent).
pub fn argument_shapes(arguments: &Value) -> Vec<(AlertKind, String)> {
    let mut found: Vec<(AlertKind, String)> = Vec::new();
    let mut visit = |s: &str, at: &str| {
        for kind in [AlertKind::PathTraversal, AlertKind::SqlInjection] {
            if !found.iter().any(|(k, _)| *k == kind) && shows(kind, s) {
                let at = if at.is_empty() { "(the arguments)" } else { at };
                found.push((kind, at.chars().take(80).collect()));
            }
        }
    };
    walk(arguments, "", &mut visit);
    found
}

fn walk(v: &Value, at: &str, visit: &mut impl FnMut(&str, &str)) {
    match v {
        Value::String(s) => visit(s, at),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{at}[{i}]"), visit);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                visit(k, &here);
                walk(item, &here, visit);
            }
        }
        _ => {}
    }
}

/// Sensitive places a tool argument has no business naming.
const SENSITIVE_PATHS: [&str; 8] = [
    "/etc/passwd",
    "/etc/shadow",
    "/proc/self/",
    "/root/",
    "/var/run/secrets/",
    ".ssh/id_",
    "/.aws/credentials",
    "/.kube/config",
];

fn shows(kind: AlertKind, s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    match kind {
        AlertKind::PathTraversal => {
            let decoded = lower
                .replace("%2e", ".")
                .replace("%2f", "/")
                .replace("%5c", "\\")
                .replace("%252e", ".")
                .replace("%252f", "/")
                .replace("..%c0%af", "../");
            decoded.contains("../")
                || decoded.contains("..\\")
                || decoded.ends_with("/..")
                || decoded == ".."
                || lower.contains('\0')
                || SENSITIVE_PATHS.iter().any(|p| decoded.contains(p))
        }
        AlertKind::SqlInjection => sql_injection(&lower),
        _ => false,
    }
}

/// Classic injection shapes: a quote closing a literal followed by a
/// tautology, a UNION SELECT, a stacked statement, or a comment tail.
fn sql_injection(s: &str) -> bool {
    let squeezed: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let tautology = [
        "' or '1'='1",
        "' or 1=1",
        "\" or 1=1",
        "' or ''='",
        " or 1=1--",
        "' or true--",
    ];
    let stacked = [
        "'; drop ",
        "; drop table",
        "'; delete ",
        "'; update ",
        "'; insert ",
        "; shutdown",
    ];
    tautology.iter().any(|t| squeezed.contains(t))
        || stacked.iter().any(|t| squeezed.contains(t))
        || squeezed.contains("union select")
        || squeezed.contains("union all select")
        || quote_then_comment(&squeezed)
        || (squeezed.contains("sleep(") && squeezed.contains('\''))
        || squeezed.contains("xp_cmdshell")
        || squeezed.contains("information_schema")
}

/// A quote closing a literal right before a comment (`admin'--`,
/// `x' /* ...`, `x'#`): the rest of the query cut off.
fn quote_then_comment(s: &str) -> bool {
    s.match_indices('\'').any(|(i, _)| {
        let rest = s[i + 1..].trim_start();
        rest.starts_with("--") || rest.starts_with("/*") || rest.starts_with('#')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(v: Value) -> Vec<AlertKind> {
        argument_shapes(&v).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn traversal_shapes_are_seen_in_any_string_at_any_depth() {
        for bad in [
            json!({"path": "../../etc/passwd"}),
            json!({"path": "notes/..%2f..%2fsecret"}),
            json!({"path": "%2e%2e/%2e%2e/x"}),
            json!({"files": [{"name": "a\\..\\..\\windows"}]}),
            json!({"path": "/var/run/secrets/kubernetes.io/serviceaccount/token"}),
            json!({"p": "ok\u{0}.txt"}),
        ] {
            assert_eq!(kinds(bad.clone()), [AlertKind::PathTraversal], "{bad}");
        }
        assert_eq!(kinds(json!({"path": "notes/2026/report.md", "n": 3})), []);
        assert_eq!(kinds(json!({"text": "Meet at 10..12 tomorrow"})), []);
    }

    #[test]
    fn injection_shapes_are_seen_and_ordinary_queries_are_not() {
        for bad in [
            json!({"name": "x' OR '1'='1"}),
            json!({"query": "SELECT name FROM users WHERE id = 1 UNION SELECT password FROM admins"}),
            json!({"id": "1; DROP TABLE patients"}),
            json!({"q": "admin'--"}),
            json!({"q": "1' AND SLEEP(5) AND '1"}),
        ] {
            assert!(
                kinds(bad.clone()).contains(&AlertKind::SqlInjection),
                "{bad}"
            );
        }
        for fine in [
            json!({"query": "SELECT name, born FROM patients WHERE ward = 3 LIMIT 10"}),
            json!({"body": "It's fine -- really"}),
            json!({"to": "o'brien@clinic.example"}),
        ] {
            assert_eq!(kinds(fine.clone()), [], "{fine}");
        }
    }

    #[test]
    fn each_kind_is_reported_once_with_the_string_that_showed_it() {
        let found =
            argument_shapes(&json!({"a": "../x", "b": "../y", "c": {"d": ["ok", "' OR 1=1 --"]}}));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0], (AlertKind::PathTraversal, "a".into()));
        assert_eq!(found[1], (AlertKind::SqlInjection, "c.d[1]".into()));
        assert_eq!(AlertKind::SqlInjection.reason_code(), "alert.sql_injection");
    }
}
