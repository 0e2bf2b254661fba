//! The kill switches an edit of the files sets, read even when the edit
//! does not load: a gateway that refuses a broken edit keeps serving the
//! previous configuration, with these switches turned on over it (a kill
//! switch always wins; lifting one takes an edit that loads).
//!
//! Read leniently, from the YAML as written, so that a policy that does
//! not even fit the AIPolicy schema still has its `spec.suspend` and its
//! agents' `suspended` honoured. Documents that are not YAML say nothing.

use super::lines::documents;
use super::settings::GatewaySettings;
use crate::resources::API_VERSION;
use palisade_policy::KillSwitches;
use serde_yaml::Value;

/// Every AIPolicy document's switches that are on, across `sources`.
pub fn kill_switches(sources: &[super::Source<'_>]) -> Vec<KillSwitches> {
    let docs: Vec<Value> = sources
        .iter()
        .flat_map(|s| documents(s.text))
        .filter_map(|(_, text)| serde_yaml::from_str::<Value>(text).ok())
        .collect();
    let is = |doc: &Value, kind: &str| {
        doc.get("apiVersion").and_then(Value::as_str) == Some(API_VERSION)
            && doc.get("kind").and_then(Value::as_str) == Some(kind)
    };
    // A policy without a namespace is in the settings' namespace.
    let default_namespace = docs
        .iter()
        .find(|d| is(d, "GatewaySettings"))
        .and_then(|d| d.get("spec")?.get("namespace")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| GatewaySettings::default().namespace);
    docs.iter()
        .filter(|d| is(d, "AIPolicy"))
        .filter_map(|doc| {
            let metadata = doc.get("metadata")?;
            let policy = metadata.get("name")?.as_str()?.to_owned();
            let namespace = metadata
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .unwrap_or(&default_namespace)
                .to_owned();
            let spec = doc.get("spec")?;
            let on = |v: &Value| v.get("suspended").and_then(Value::as_bool) == Some(true);
            let suspended_agents: Vec<String> = spec
                .get("agents")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter(|a| on(a))
                .filter_map(|a| a.get("name")?.as_str().map(str::to_owned))
                .collect();
            let suspend = spec.get("suspend").and_then(Value::as_bool) == Some(true);
            (suspend || !suspended_agents.is_empty()).then_some(KillSwitches {
                namespace,
                policy,
                suspend,
                suspended_agents,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standalone::Source;

    #[test]
    fn switches_are_read_from_documents_that_do_not_fit_the_schema() {
        let text = "\
apiVersion: palisade.dev/v1alpha1
kind: GatewaySettings
spec: {namespace: clinic}
---
apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {name: intake}
spec:
  suspend: true
  unknownField: [broken
---
apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {name: research, namespace: lab}
spec:
  agents:
    - {name: a, suspended: true}
    - {name: b}
    - {name: c, suspended: \"yes\"}
  tools: 42
---
apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {name: quiet}
spec: {suspend: false}
";
        let got = kill_switches(&[Source {
            name: "p.yaml",
            text,
        }]);
        // The first AIPolicy is not YAML (an unclosed list): it says nothing.
        assert_eq!(
            got,
            vec![KillSwitches {
                namespace: "lab".into(),
                policy: "research".into(),
                suspend: false,
                suspended_agents: vec!["a".into()],
            }]
        );
        let fixed = text.replace("[broken", "[broken]");
        let got = kill_switches(&[Source {
            name: "p.yaml",
            text: &fixed,
        }]);
        assert_eq!(
            got[0],
            KillSwitches {
                namespace: "clinic".into(),
                policy: "intake".into(),
                suspend: true,
                suspended_agents: vec![],
            }
        );
    }
}
