//! Which resource types the server knows: a fixed list of built-in kinds
//! (stored as plain JSON, not validated) plus every type a
//! CustomResourceDefinition registers, and the discovery documents that
//! describe them.

use crate::validation::Schema;
use serde_json::{Value, json};
use std::sync::Arc;

/// A printer column of a CRD version (`kubectl get` columns).
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub priority: i64,
    pub description: String,
}

/// One served resource: a group/version/plural and what it allows.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// Create-only review kinds (TokenReview, SubjectAccessReview).
    pub review: bool,
    pub schema: Option<Arc<Schema>>,
    pub printer_columns: Vec<PrinterColumn>,
    pub selectable_fields: Vec<String>,
    /// The CRD that defines it, if any.
    pub crd: Option<String>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `configmaps` or `aipolicies.palisade.dev`, as error messages say it.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }

    fn verbs(&self) -> Vec<&'static str> {
        if self.review {
            vec!["create"]
        } else {
            vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }

    /// Storage identity: versions of one group+plural share objects.
    pub fn storage_key(&self) -> (String, String) {
        (self.group.clone(), self.plural.clone())
    }
}

fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_ascii_lowercase(),
        short_names: Vec::new(),
        categories: Vec::new(),
        namespaced,
        status_subresource: false,
        review: false,
        schema: None,
        printer_columns: Vec::new(),
        selectable_fields: Vec::new(),
        crd: None,
    }
}

/// The built-in kinds this server stores (without validating them).
pub fn builtins() -> Vec<ResourceType> {
    let short = |mut t: ResourceType, names: &[&str]| {
        t.short_names = names.iter().map(|s| s.to_string()).collect();
        t
    };
    let status = |mut t: ResourceType| {
        t.status_subresource = true;
        t
    };
    let review = |mut t: ResourceType| {
        t.review = true;
        t
    };
    vec![
        status(short(
            builtin("", "v1", "Namespace", "namespaces", false),
            &["ns"],
        )),
        short(builtin("", "v1", "ConfigMap", "configmaps", true), &["cm"]),
        builtin("", "v1", "Secret", "secrets", true),
        short(
            builtin("", "v1", "ServiceAccount", "serviceaccounts", true),
            &["sa"],
        ),
        short(builtin("", "v1", "Event", "events", true), &["ev"]),
        status(short(
            builtin("", "v1", "Service", "services", true),
            &["svc"],
        )),
        status(short(
            builtin(
                "",
                "v1",
                "PersistentVolumeClaim",
                "persistentvolumeclaims",
                true,
            ),
            &["pvc"],
        )),
        status(short(
            builtin("apps", "v1", "Deployment", "deployments", true),
            &["deploy"],
        )),
        status(short(
            builtin("apps", "v1", "StatefulSet", "statefulsets", true),
            &["sts"],
        )),
        builtin("coordination.k8s.io", "v1", "Lease", "leases", true),
        short(
            builtin("events.k8s.io", "v1", "Event", "events", true),
            &["ev"],
        ),
        short(
            builtin(
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
                "networkpolicies",
                true,
            ),
            &["netpol"],
        ),
        status(short(
            builtin(
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
                true,
            ),
            &["pdb"],
        )),
        builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
        status(builtin(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            false,
        )),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            false,
        ),
        status(short(
            builtin(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
            ),
            &["crd", "crds"],
        )),
        review(builtin(
            "authentication.k8s.io",
            "v1",
            "TokenReview",
            "tokenreviews",
            false,
        )),
        review(builtin(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            false,
        )),
        review(builtin(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
        )),
    ]
}

/// The resource types a CRD object declares, one per served version, or
/// a message saying what is wrong with it.
pub fn types_from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let spec = crd.get("spec").ok_or("spec: Required value")?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .ok_or("spec.group: Required value")?;
    let names = spec.get("names").ok_or("spec.names: Required value")?;
    let plural = names
        .get("plural")
        .and_then(Value::as_str)
        .ok_or("spec.names.plural: Required value")?;
    let kind = names
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("spec.names.kind: Required value")?;
    if name != format!("{plural}.{group}") {
        return Err(format!(
            "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
        ));
    }
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let scope = spec
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("Namespaced");
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or("spec.versions: Required value")?;
    let mut out = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let version = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("spec.versions[].name: Required value")?;
        let schema = match v.pointer("/schema/openAPIV3Schema") {
            Some(s) => Some(Arc::new(Schema::new(s.clone())?)),
            None => None,
        };
        let printer_columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: c.get("name").and_then(Value::as_str).unwrap_or("").into(),
                        type_: c
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("string")
                            .into(),
                        json_path: c
                            .get("jsonPath")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .into(),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        description: c
                            .get("description")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .into(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let selectable_fields = v
            .get("selectableFields")
            .and_then(Value::as_array)
            .map(|f| {
                f.iter()
                    .filter_map(|x| x.get("jsonPath").and_then(Value::as_str))
                    .map(|p| p.trim_start_matches('.').to_string())
                    .collect()
            })
            .unwrap_or_default();
        out.push(ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: names
                .get("singular")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| kind.to_ascii_lowercase()),
            short_names: strings(names.get("shortNames")),
            categories: strings(names.get("categories")),
            namespaced: scope == "Namespaced",
            status_subresource: v.pointer("/subresources/status").is_some(),
            review: false,
            schema,
            printer_columns,
            selectable_fields,
            crd: Some(name.to_string()),
        });
    }
    Ok(out)
}

/// All served types.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: Vec<ResourceType>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        Self { types: builtins() }
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    pub fn find_group_resource(&self, group: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.plural == plural)
    }

    /// Replaces whatever a CRD registered before with `types`.
    pub fn set_crd_types(&mut self, crd: &str, types: Vec<ResourceType>) {
        self.types.retain(|t| t.crd.as_deref() != Some(crd));
        self.types.extend(types);
    }

    pub fn remove_crd(&mut self, crd: &str) {
        self.types.retain(|t| t.crd.as_deref() != Some(crd));
    }

    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// Groups in first-seen order, each with its versions.
    fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for t in self.types.iter().filter(|t| !t.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) if !versions.contains(&t.version) => {
                    versions.push(t.version.clone())
                }
                Some(_) => {}
                None => groups.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        groups
    }

    /// `GET /apis`.
    pub fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .into_iter()
            .map(|(group, versions)| {
                let versions: Vec<Value> = versions
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                    .collect();
                json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /apis/{group}`.
    pub fn api_group(&self, group: &str) -> Option<Value> {
        let (name, versions) = self.groups().into_iter().find(|(g, _)| g == group)?;
        let versions: Vec<Value> = versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
            .collect();
        Some(
            json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": versions, "preferredVersion": versions[0]}),
        )
    }

    /// `GET /api/v1` or `GET /apis/{group}/{version}`.
    pub fn api_resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let mut resources = Vec::new();
        for t in self
            .types
            .iter()
            .filter(|t| t.group == group && t.version == version)
        {
            let mut r = json!({
                "name": t.plural,
                "singularName": t.singular,
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": t.verbs(),
            });
            if !t.short_names.is_empty() {
                r["shortNames"] = json!(t.short_names);
            }
            if !t.categories.is_empty() {
                r["categories"] = json!(t.categories);
            }
            resources.push(r);
            if t.status_subresource {
                resources.push(json!({
                    "name": format!("{}/status", t.plural),
                    "singularName": "",
                    "namespaced": t.namespaced,
                    "kind": t.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        if resources.is_empty() {
            return None;
        }
        let group_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
        )
    }
}
