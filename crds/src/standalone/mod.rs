//! The standalone configuration: one or more YAML files holding `AIPolicy`
//! and `ToolGrant` documents exactly as `kubectl apply -f` takes them, plus
//! optional `v1 Secret` documents and at most one `GatewaySettings`
//! document. Every problem comes back as `file:line: message`, and unknown
//! fields are errors (a typo must never silently weaken a policy).
//!
//! Here: reading the documents and compiling them; the `GatewaySettings`
//! document's types are in [`settings`], and finding the line of a field
//! path in a document's text is in [`lines`]; the kill switches of an
//! edit that does not load are read by [`switches`].

mod lines;
mod settings;
mod switches;

pub use settings::{
    ApprovalSettings, AuditSettings, EnvSecret, FailureMode, GatewaySettings, OperatorToken,
};
pub use switches::kill_switches;

use crate::compiler::{Compilation, CompileInput, Secrets, compile};
use crate::diagnostic::{Diagnostic, ObjectRef};
use crate::resources::{AIPolicy, API_VERSION, ToolGrant};
use jiff::Timestamp;
use lines::{documents, file_line, locate, without_positions};
use serde::de::DeserializeOwned;
use settings::SettingsDocument;
use std::collections::HashMap;
use std::fmt;

/// One file to load: a name for messages, and its text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// A problem at a line of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiagnostic {
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
    pub warning: bool,
}

impl fmt::Display for FileDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: ", self.file)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if self.warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Everything the files declare.
#[derive(Debug, Clone, Default)]
pub struct Standalone {
    pub settings: GatewaySettings,
    pub policies: Vec<AIPolicy>,
    pub grants: Vec<ToolGrant>,
    pub secrets: Secrets,
}

/// Where a document came from, to put line numbers on compiler diagnostics.
#[derive(Debug, Clone)]
struct Origin {
    file: String,
    /// 1-based line of the document's first line.
    start: usize,
    text: String,
}

/// Parses the files and compiles them. Every error in every file is
/// returned at once; any error rejects the whole configuration (a gateway
/// keeps serving what it had). Warnings (an expired grant) come back with
/// the result.
pub fn load(
    sources: &[Source<'_>],
    env: &dyn Fn(&str) -> Option<String>,
    now: Timestamp,
) -> Result<(Standalone, Compilation, Vec<FileDiagnostic>), Vec<FileDiagnostic>> {
    let (config, origins) = parse(sources, env)?;
    let compilation = compile(CompileInput {
        policies: &config.policies,
        grants: &config.grants,
        secrets: &config.secrets,
        // The files are the admin's own: any provider URL; the gateway
        // still refuses credentials over plain http:// unless started with
        // --allow-plaintext-credentials.
        egress: &palisade_policy::Egress::any_url(true),
        previous: None,
        now,
        // Standalone files are not shipped in a Secret.
        policy_budget: None,
    })
    .map_err(|e| {
        vec![FileDiagnostic {
            file: sources
                .first()
                .map(|s| s.name.to_owned())
                .unwrap_or_default(),
            line: None,
            message: e.to_string(),
            warning: false,
        }]
    })?;
    let located = |d: &Diagnostic| match origins.get(&d.object) {
        Some(o) => FileDiagnostic {
            file: o.file.clone(),
            line: Some(o.start + locate(&o.text, &d.field)),
            message: if d.is_error() {
                d.to_string()
            } else {
                format!("{}: {}", d.object, d.short())
            },
            warning: !d.is_error(),
        },
        None => FileDiagnostic {
            file: String::new(),
            line: None,
            message: d.to_string(),
            warning: !d.is_error(),
        },
    };
    let errors: Vec<FileDiagnostic> = compilation.errors().map(located).collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let warnings = compilation
        .diagnostics()
        .filter(|d| !d.is_error())
        .map(located)
        .collect();
    Ok((config, compilation, warnings))
}

fn parse(
    sources: &[Source<'_>],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Standalone, HashMap<ObjectRef, Origin>), Vec<FileDiagnostic>> {
    let mut errors = Vec::new();
    // Whoever writes the files runs the gateway: every Secret in them may
    // be a provider credential (no opt-in label needed, unlike a cluster).
    let mut config = Standalone {
        secrets: Secrets::all_allowed_as_credentials(),
        ..Standalone::default()
    };
    let mut origins: HashMap<ObjectRef, Origin> = HashMap::new();
    let mut settings: Option<(GatewaySettings, Origin)> = None;
    let mut k8s_secrets: Vec<(k8s_openapi::api::core::v1::Secret, Origin)> = Vec::new();

    for source in sources {
        for (start, text) in documents(source.text) {
            let origin = Origin {
                file: source.name.to_owned(),
                start,
                text: text.to_owned(),
            };
            let error = |line: usize, message: String| FileDiagnostic {
                file: source.name.to_owned(),
                line: Some(start + line),
                message,
                warning: false,
            };
            let value: serde_yaml::Value = match serde_yaml::from_str(text) {
                Ok(serde_yaml::Value::Null) => continue,
                Ok(v) => v,
                Err(e) => {
                    errors.push(yaml_error(&origin, &e));
                    continue;
                }
            };
            let field = |name: &str| {
                value
                    .get(name)
                    .and_then(serde_yaml::Value::as_str)
                    .unwrap_or("")
            };
            let (api_version, kind) = (field("apiVersion"), field("kind"));
            match (api_version, kind) {
                (API_VERSION, "AIPolicy") => {
                    if let Some(policy) = typed::<AIPolicy>(&origin, &mut errors) {
                        register(policy, "AIPolicy", &origin, &mut origins, &mut errors, &mut config.policies, error);
                    }
                }
                (API_VERSION, "ToolGrant") => {
                    if let Some(grant) = typed::<ToolGrant>(&origin, &mut errors) {
                        register(grant, "ToolGrant", &origin, &mut origins, &mut errors, &mut config.grants, error);
                    }
                }
                (API_VERSION, "GatewaySettings") => {
                    if let Some(doc) = typed::<SettingsDocument>(&origin, &mut errors) {
                        if let Some((_, first)) = &settings {
                            errors.push(error(
                                0,
                                format!(
                                    "a second GatewaySettings document (the first is at {}:{}); keep one",
                                    first.file, first.start
                                ),
                            ));
                        } else {
                            settings = Some((doc.spec, origin.clone()));
                        }
                    }
                }
                ("v1", "Secret") => {
                    if let Some(secret) = typed::<k8s_openapi::api::core::v1::Secret>(&origin, &mut errors) {
                        k8s_secrets.push((secret, origin.clone()));
                    }
                }
                (API_VERSION, "Approval") => errors.push(error(
                    0,
                    "Approval documents are created by the gateway when a call needs a human; remove this one".into(),
                )),
                (_, "AIPolicy" | "ToolGrant" | "GatewaySettings") => errors.push(error(
                    locate(text, "apiVersion"),
                    format!("apiVersion {api_version:?} is not supported for {kind}; write apiVersion: {API_VERSION}"),
                )),
                (_, "") => errors.push(error(
                    0,
                    "the document has no kind; every document needs apiVersion and kind (AIPolicy, ToolGrant, Secret or GatewaySettings)".into(),
                )),
                _ => errors.push(error(
                    locate(text, "kind"),
                    format!(
                        "kind {kind:?} (apiVersion {api_version:?}) is not supported in a standalone file; it holds AIPolicy, ToolGrant, Secret and GatewaySettings documents"
                    ),
                )),
            }
        }
    }

    if let Some((s, _)) = &settings {
        config.settings = s.clone();
    }
    let default_ns = config.settings.namespace.clone();
    // A file has no API server to count generations: it is generation 1,
    // as a freshly created object would be.
    for p in &mut config.policies {
        default_namespace_of(&mut p.metadata, &default_ns);
        p.metadata.generation.get_or_insert(1);
    }
    for g in &mut config.grants {
        default_namespace_of(&mut g.metadata, &default_ns);
        g.metadata.generation.get_or_insert(1);
    }
    // Origins were keyed before defaulting the namespace; re-key them.
    origins = origins
        .into_iter()
        .map(|(mut k, v)| {
            if k.namespace.is_empty() {
                k.namespace = default_ns.clone();
            }
            (k, v)
        })
        .collect();
    for (secret, _) in &k8s_secrets {
        let ns = secret
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| default_ns.clone());
        let name = secret.metadata.name.clone().unwrap_or_default();
        for (k, v) in secret.data.iter().flatten() {
            config
                .secrets
                .insert(&ns, &name, k, String::from_utf8_lossy(&v.0).into_owned());
        }
        for (k, v) in secret.string_data.iter().flatten() {
            config.secrets.insert(&ns, &name, k, v.clone());
        }
    }
    if let Some((s, origin)) = &settings {
        for (i, secret) in s.secrets.iter().enumerate() {
            let ns = secret
                .namespace
                .clone()
                .unwrap_or_else(|| default_ns.clone());
            for (key, var) in &secret.from_env {
                match env(var) {
                    Some(value) => config.secrets.insert(&ns, &secret.name, key, value),
                    None => errors.push(FileDiagnostic {
                        file: origin.file.clone(),
                        line: Some(origin.start + locate(&origin.text, &format!("spec.secrets[{i}].fromEnv.{key}"))),
                        message: format!(
                            "GatewaySettings: spec.secrets[{i}].fromEnv.{key}: environment variable {var} is not set (fix: export {var}=... before starting the gateway)"
                        ),
                        warning: false,
                    }),
                }
            }
        }
    }
    if errors.is_empty() {
        Ok((config, origins))
    } else {
        Err(errors)
    }
}

fn default_namespace_of(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ns: &str,
) {
    if meta.namespace.as_deref().unwrap_or("").is_empty() {
        meta.namespace = Some(ns.to_owned());
    }
}

trait HasMeta {
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
}
impl HasMeta for AIPolicy {
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &self.metadata
    }
}
impl HasMeta for ToolGrant {
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &self.metadata
    }
}

fn register<T: HasMeta>(
    object: T,
    kind: &str,
    origin: &Origin,
    origins: &mut HashMap<ObjectRef, Origin>,
    errors: &mut Vec<FileDiagnostic>,
    into: &mut Vec<T>,
    error: impl Fn(usize, String) -> FileDiagnostic,
) {
    let meta = object.meta();
    let Some(name) = meta.name.as_deref().filter(|n| !n.is_empty()) else {
        errors.push(error(
            locate(&origin.text, "metadata"),
            format!("{kind}: metadata.name is required"),
        ));
        return;
    };
    let key = ObjectRef::new(kind, meta.namespace.as_deref().unwrap_or(""), name);
    if let Some(first) = origins.get(&key) {
        errors.push(error(
            0,
            format!(
                "{kind} {name:?} is defined twice (first at {}:{}); keep one",
                first.file, first.start
            ),
        ));
        return;
    }
    origins.insert(key, origin.clone());
    into.push(object);
}

/// Deserializes a document into `T`, reporting every unknown field and
/// every type error with its line.
fn typed<T: DeserializeOwned>(origin: &Origin, errors: &mut Vec<FileDiagnostic>) -> Option<T> {
    let mut unknown = Vec::new();
    let result: Result<T, _> =
        serde_ignored::deserialize(serde_yaml::Deserializer::from_str(&origin.text), |path| {
            let path = field_path(&path);
            // kube's derived types read apiVersion and kind outside serde's view.
            if path != "apiVersion" && path != "kind" {
                unknown.push(path);
            }
        });
    for path in &unknown {
        errors.push(FileDiagnostic {
            file: origin.file.clone(),
            line: Some(origin.start + locate(&origin.text, path)),
            message: format!("unknown field {path}; check its spelling against `kubectl explain` or docs/policy.md"),
            warning: false,
        });
    }
    match result {
        Ok(v) if unknown.is_empty() => Some(v),
        Ok(_) => None,
        Err(e) => {
            errors.push(yaml_error(origin, &e));
            None
        }
    }
}

fn yaml_error(origin: &Origin, e: &serde_yaml::Error) -> FileDiagnostic {
    FileDiagnostic {
        file: origin.file.clone(),
        line: e
            .location()
            .map(|l| origin.start + file_line(&origin.text, l.line() - 1)),
        // The `file:line:` prefix says where; YAML's own positions count
        // from the document and its own line ends.
        message: without_positions(&e.to_string()),
        warning: false,
    }
}

fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => {
            let parent = field_path(parent);
            if parent.is_empty() {
                key.to_string()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}
