//! [`Policy`]: a standalone configuration (the `AIPolicy` and the
//! documents beside it: `GatewaySettings`, Secrets) built in code.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// `examples/quickstart.yaml`: agent `demo` (API key
/// `demo-key-change-me`), a local Ollama provider, `search_*`/`read_*`
/// allowed and `send_email` held for approval.
const QUICKSTART: &str = include_str!("../../../examples/quickstart.yaml");

/// A standalone configuration: an `AIPolicy` and the documents loaded with
/// it, changed with builder methods whose names say what the test wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    documents: Vec<Value>,
}

impl Policy {
    /// The quickstart configuration (`examples/quickstart.yaml`).
    pub fn quickstart() -> Self {
        Self::from_yaml(QUICKSTART)
    }

    /// The documents of a YAML stream (`---`-separated), exactly as given.
    pub fn from_yaml(text: &str) -> Self {
        let documents = serde_yaml::Deserializer::from_str(text)
            .map(|d| {
                let v: serde_yaml::Value = serde::Deserialize::deserialize(d).unwrap();
                serde_json::to_value(v).unwrap()
            })
            .filter(|v| !v.is_null())
            .collect();
        Self { documents }
    }

    /// The policy-wide kill switch on (`spec.suspend: true`).
    pub fn suspended(self) -> Self {
        self.set("suspend", json!(true))
    }

    /// Agent `name`'s own kill switch on (`suspended: true`).
    pub fn agent_suspended(mut self, name: &str) -> Self {
        self.agent_mut(name)["suspended"] = json!(true);
        self
    }

    /// Adds an agent (`{"name": ..., "apiKeySecretRef": ...}` or any
    /// other field of `spec.agents[]`).
    pub fn agent(mut self, agent: Value) -> Self {
        self.list_mut("agents").push(agent);
        self
    }

    /// Appends a tool rule (`{"tools": [...], "action": ...}`) to
    /// `spec.tools.rules`.
    pub fn rule(mut self, rule: Value) -> Self {
        let tools = self.spec_mut().as_object_mut().unwrap();
        let tools = tools.entry("tools").or_insert_with(|| json!({}));
        let rules = tools
            .as_object_mut()
            .unwrap()
            .entry("rules")
            .or_insert_with(|| json!([]));
        rules.as_array_mut().unwrap().push(rule);
        self
    }

    /// `spec.approvals.ttl` (`"2s"`, `"15m"`).
    pub fn approvals_ttl(self, ttl: &str) -> Self {
        self.set("approvals", json!({"ttl": ttl}))
    }

    /// `spec.approvals.maxPendingPerAgent`.
    pub fn max_pending_per_agent(mut self, n: u32) -> Self {
        self.spec_mut()["approvals"]["maxPendingPerAgent"] = json!(n);
        self
    }

    /// `spec.routing.fallbackProvider`.
    pub fn fallback_provider(mut self, provider: &str) -> Self {
        self.spec_mut()["routing"]["fallbackProvider"] = json!(provider);
        self
    }

    /// Provider `name`'s `timeout` (`"500ms"`).
    pub fn provider_timeout(mut self, name: &str, timeout: &str) -> Self {
        self.provider_mut(name)["timeout"] = json!(timeout);
        self
    }

    /// Provider `name`'s `baseUrl`.
    pub fn provider_base_url(mut self, name: &str, url: &str) -> Self {
        self.provider_mut(name)["baseUrl"] = json!(url);
        self
    }

    /// Sets `spec.FIELD` to `value`, whatever it was.
    pub fn set(mut self, field: &str, value: Value) -> Self {
        self.spec_mut()[field] = value;
        self
    }

    /// The `AIPolicy` document.
    pub fn aipolicy(&self) -> &Value {
        self.documents
            .iter()
            .find(|d| d["kind"] == "AIPolicy")
            .expect("the configuration has an AIPolicy document")
    }

    /// Every document, as the YAML stream the loaders read.
    pub fn yaml(&self) -> String {
        self.documents
            .iter()
            .map(|d| serde_yaml::to_string(d).unwrap())
            .collect::<Vec<_>>()
            .join("---\n")
    }

    /// Writes [`Self::yaml`] to `DIR/policy.yaml` and returns the path.
    pub fn write_to(&self, dir: &Path) -> PathBuf {
        let path = dir.join("policy.yaml");
        std::fs::write(&path, self.yaml()).unwrap();
        path
    }

    fn spec_mut(&mut self) -> &mut Value {
        let policy = self
            .documents
            .iter_mut()
            .find(|d| d["kind"] == "AIPolicy")
            .expect("the configuration has an AIPolicy document");
        &mut policy["spec"]
    }

    fn list_mut(&mut self, field: &str) -> &mut Vec<Value> {
        let spec = self.spec_mut();
        if !spec[field].is_array() {
            spec[field] = json!([]);
        }
        spec[field].as_array_mut().unwrap()
    }

    fn named_mut(&mut self, field: &str, name: &str) -> &mut Value {
        self.list_mut(field)
            .iter_mut()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("no spec.{field}[] named {name:?}"))
    }

    fn agent_mut(&mut self, name: &str) -> &mut Value {
        self.named_mut("agents", name)
    }

    fn provider_mut(&mut self, name: &str) -> &mut Value {
        self.named_mut("providers", name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quickstart_renders_back_to_the_same_documents() {
        let p = Policy::quickstart();
        assert_eq!(Policy::from_yaml(&p.yaml()), p);
        assert_eq!(p.aipolicy()["metadata"]["name"], "quickstart");
        assert_eq!(p.documents.len(), 3);
    }

    #[test]
    fn builder_methods_change_the_aipolicy_only() {
        let p = Policy::quickstart()
            .suspended()
            .agent_suspended("demo")
            .approvals_ttl("2s")
            .max_pending_per_agent(3)
            .provider_timeout("local", "500ms")
            .rule(json!({"tools": ["x"], "action": "Deny"}));
        let spec = &p.aipolicy()["spec"];
        assert_eq!(spec["suspend"], true);
        assert_eq!(spec["agents"][0]["suspended"], true);
        assert_eq!(spec["approvals"]["ttl"], "2s");
        assert_eq!(spec["approvals"]["maxPendingPerAgent"], 3);
        assert_eq!(spec["providers"][0]["timeout"], "500ms");
        assert_eq!(spec["tools"]["rules"][2]["tools"][0], "x");
        assert_eq!(p.documents[0], Policy::quickstart().documents[0]);
    }
}
