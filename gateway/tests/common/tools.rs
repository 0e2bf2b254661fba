//! The clinic that the tests of tools Palisade runs share: an SQLite
//! database, a directory of notes, a registered HTTP tool whose answers
//! hold canary secrets, and the policy that runs them.

use axum::http::HeaderMap;
use palisade_audit::Store;
use palisade_fake_upstreams::{FakeOpenAi, Script};
use palisade_gateway::metrics::GatewayMetrics;
use palisade_gateway::state::AppState;
use palisade_policy::Egress;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub const KEY: &str = "agent-key-a";
pub const OPERATOR: &str = "operator-token";
pub const TOOL_KEY: &str = "tool-key-CANARY-7f3a";

/// What a registered HTTP tool was called with.
pub type Calls = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

pub struct Clinic {
    pub dir: PathBuf,
    /// The `notes` root.
    pub root: PathBuf,
    /// The registered HTTP tools' URL (`lookup` and `delete_record`).
    pub tool_url: String,
    pub tool_calls: Calls,
}

impl Clinic {
    /// `DIR/notes/visit.md`, `DIR/outside.txt`, `DIR/clinic.db` with one
    /// patient, and the HTTP tool listening.
    pub async fn open(name: &str) -> Self {
        let dir = palisade_testkit::temp_dir(&format!("tools-{name}"));
        std::fs::create_dir_all(dir.join("notes")).unwrap();
        std::fs::write(dir.join("notes/visit.md"), "Ann: blood pressure 120/80").unwrap();
        std::fs::write(dir.join("outside.txt"), "outside").unwrap();
        let db = rusqlite::Connection::open(dir.join("clinic.db")).unwrap();
        db.execute_batch(
            "CREATE TABLE patients (id INTEGER, name TEXT); INSERT INTO patients VALUES (1, 'Ann');",
        )
        .unwrap();
        let (tool_url, tool_calls) = lookup_tool().await;
        Self {
            root: dir.join("notes"),
            dir,
            tool_url,
            tool_calls,
        }
    }

    /// The policy (and its Secret) for agent `a` (key [`KEY`]): reads and
    /// `lookup` allowed, `write_file` held for approval, `delete_record`
    /// and anything else denied, at most 3 rounds of the tool loop. The
    /// first of `providers` (`(name, base URL)`) is the default; each
    /// other serves the model of its own name.
    pub fn policy(&self, providers: &[(&str, &str)]) -> String {
        let list: Vec<String> = providers
            .iter()
            .map(|(name, url)| format!("{{name: {name}, type: openai, baseUrl: \"{url}\"}}"))
            .collect();
        let rules: Vec<String> = providers
            .iter()
            .skip(1)
            .map(|(name, _)| format!("{{models: [\"{name}\"], provider: {name}}}"))
            .collect();
        format!(
            r#"apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {{name: clinic}}
spec:
  agents: [{{name: app, apiKeySecretRef: {{name: keys, key: a}}}}]
  providers: [{providers}]
  routing: {{defaultProvider: {default}, rules: [{rules}]}}
  tools:
    default: Deny
    rules:
      - {{name: reads, tools: [read_file, sql_query, lookup, search_web, get_weather], action: Allow}}
      - {{name: writes, tools: [write_file], action: RequireApproval}}
      - {{name: no-deletes, tools: [delete_record], action: Deny}}
    run:
      maxSteps: 3
      sqlQuery:
        databases: [{{name: clinic, sqlitePath: "{db}"}}]
      files:
        roots: [{{name: notes, path: "{root}", access: ReadWrite}}]
      http:
        - name: lookup
          description: Looks a patient up.
          parameters: {{type: object, properties: {{id: {{type: integer}}}}}}
          url: "{url}"
          credentialsSecretRef: {{name: keys, key: tool}}
        - name: delete_record
          description: Deletes a patient's record.
          url: "{url}"
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{a: {KEY}, tool: {TOOL_KEY}}}
"#,
            providers = list.join(", "),
            default = providers[0].0,
            rules = rules.join(", "),
            db = self.dir.join("clinic.db").display(),
            root = self.root.display(),
            url = self.tool_url,
        )
    }

    /// Writes [`Self::policy`] to `DIR/policy.yaml`.
    pub fn write_policy(&self, providers: &[(&str, &str)]) -> PathBuf {
        let path = self.dir.join("policy.yaml");
        std::fs::write(&path, self.policy(providers)).unwrap();
        path
    }

    /// A standalone gateway in process over the clinic (operator token
    /// [`OPERATOR`]), its one provider a fake model playing `script`.
    pub async fn serve(&self, script: Script) -> Served {
        self.serve_edited(script, |p| p).await
    }

    /// [`Self::serve`] with the policy's text edited by `edit` first.
    pub async fn serve_edited(
        &self,
        script: Script,
        edit: impl FnOnce(String) -> String,
    ) -> Served {
        let model = FakeOpenAi::start(script).await.unwrap();
        let path = self.dir.join("policy.yaml");
        std::fs::write(&path, edit(self.policy(&[("local", &model.base_url())]))).unwrap();
        let metrics = Arc::new(GatewayMetrics::new().unwrap());
        let current = palisade_gateway::snapshot::empty();
        palisade_gateway::config::reload::load_into(&[path], &current, &metrics).unwrap();
        let (state, store) = super::standalone_built(&self.dir, current, metrics, OPERATOR, |b| {
            b.egress(Egress::any_url(true))
        })
        .await;
        Served {
            state,
            store,
            model,
        }
    }
}

/// A gateway in process ([`Clinic::serve`]).
pub struct Served {
    pub state: AppState,
    pub store: Store,
    pub model: FakeOpenAi,
}

/// A registered HTTP tool: records each call and answers with text that
/// holds secrets (which must be redacted before anyone sees them).
async fn lookup_tool() -> (String, Calls) {
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/lookup",
        axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((headers, body.0.clone()));
                axum::Json(json!({
                    "patient": body.0["id"],
                    "note": "billing key sk-proj-CANARYabcdefghij0123456789 and password=CANARYhunter2",
                    "blob": "Q0FOQVJZ".repeat(60),
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/lookup", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}
