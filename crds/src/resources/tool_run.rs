//! `spec.tools.run` and `spec.tools.results` of an AIPolicy: tools
//! Palisade runs itself (the built-in `sql_query`, `read_file`,
//! `write_file`, and registered HTTP tools) and what is done to tool
//! results before a model or client sees them.

use super::SecretKeyRef;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Tools the gateway runs on the agent's behalf once the policy allows a
/// call, with credentials the agent never holds. Each is still decided by
/// `spec.tools.rules`, ToolGrants, approvals and kill switches.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolRunSpec {
    /// The built-in `sql_query`: read-only SQL over the databases listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_query: Option<SqlQuerySpec>,
    /// The built-ins `read_file` and `write_file` (the latter only when a
    /// root is `ReadWrite`), below the roots listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesSpec>,
    /// Registered HTTP tools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub http: Vec<HttpToolSpec>,
    /// Rounds of the server-side tool loop in `/v1/chat/completions`
    /// (model proposes, Palisade runs, results go back) before the gateway
    /// answers with what it has. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub max_steps: Option<u32>,
    /// Which chat completions the loop offers these tools to:
    /// `WhenRequested` (default: those whose `tools` name one, by function
    /// name) or `Always` (every chat completion of the policy's agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<ToolOfferSpec>,
}

/// `spec.tools.run.offer`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ToolOfferSpec {
    #[default]
    WhenRequested,
    Always,
}

/// `spec.tools.run.sqlQuery`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqlQuerySpec {
    /// The databases queries may name.
    #[schemars(length(min = 1, max = 32))]
    pub databases: Vec<SqlDatabaseSpec>,
    /// Rows returned at most (default 1000); a query with more is cut and
    /// says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_rows: Option<u32>,
    /// Bytes of result at most (default 262144).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024))]
    pub max_result_bytes: Option<u64>,
    /// How long a query may run, e.g. `5s` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
}

/// One database of `sql_query`: a SQLite file or a PostgreSQL connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.sqlitePath) != has(self.postgresSecretRef)")
    .message("a database is either sqlitePath (a file) or postgresSecretRef (a connection URL), exactly one"))]
#[serde(rename_all = "camelCase")]
pub struct SqlDatabaseSpec {
    /// How queries name it.
    #[schemars(
        length(min = 1, max = 63),
        pattern(r"^[a-z0-9]([-_a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Absolute path of a SQLite file in the gateway pod (mount it through
    /// the chart's `gateway.toolVolumes`); opened read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 4096))]
    pub sqlite_path: Option<String>,
    /// Secret key holding a PostgreSQL URL (`postgres://user:pw@host/db`);
    /// every query runs in a `READ ONLY` transaction. Give it a role that
    /// can only read, too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_secret_ref: Option<SecretKeyRef>,
}

/// `spec.tools.run.files`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilesSpec {
    /// The directories the file tools may use.
    #[schemars(length(min = 1, max = 32))]
    pub roots: Vec<FileRootSpec>,
    /// Bytes a file read or written may have at most (default 1048576).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_bytes: Option<u64>,
}

/// One root of the file tools. Paths are resolved below it the way
/// `openat2(RESOLVE_BENEATH)` does: `..`, absolute paths and symbolic
/// links are refused, as are files with more than one hard link.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileRootSpec {
    /// How calls name it.
    #[schemars(
        length(min = 1, max = 63),
        pattern(r"^[a-z0-9]([-_a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Absolute directory path in the gateway pod.
    #[schemars(length(min = 1, max = 4096))]
    pub path: String,
    /// `Read` (default) or `ReadWrite`.
    #[serde(default)]
    pub access: FileAccessSpec,
    /// Globs over the relative path a file must match, e.g. `*.md`,
    /// `reports/**`. Omitted: any file below the root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub globs: Vec<String>,
}

/// What the file tools may do below a root.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FileAccessSpec {
    #[default]
    Read,
    ReadWrite,
}

/// A registered HTTP tool: the gateway calls `url` with the arguments
/// (JSON body for `POST`/`PUT`, query parameters for `GET`/`DELETE`) and
/// the credentials from the Secret; the agent sees neither.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpToolSpec {
    /// The tool's name, as agents and models call it.
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-zA-Z0-9_-]+$"))]
    pub name: String,
    /// What the tool does, shown to models.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub description: String,
    /// JSON schema of the arguments, shown to models. Default: any object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub parameters: Option<serde_json::Value>,
    /// The URL called; it must be on the platform's egress allow-list
    /// (the chart's `providers.allowedBaseUrls`).
    #[schemars(length(min = 1, max = 2048), pattern(r"^https?://[^\s]+$"))]
    pub url: String,
    /// `GET`, `POST` (default), `PUT` or `DELETE`.
    #[serde(default)]
    pub method: HttpMethodSpec,
    /// Secret key sent as `Authorization: Bearer ...`; the Secret must be
    /// labelled `palisade.dev/credentials: "true"` by its owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
    /// e.g. `10s` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
    /// Bytes of response read at most (default 262144); a longer response
    /// fails the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_response_bytes: Option<u64>,
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// HTTP method of a registered tool.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum HttpMethodSpec {
    #[serde(rename = "GET")]
    Get,
    #[default]
    #[serde(rename = "POST")]
    Post,
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "DELETE")]
    Delete,
}

/// `spec.tools.results`: applied to every tool result before a model or
/// client sees it (results of the tools above, and `role: "tool"`
/// messages agents send in chat).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolResultsSpec {
    /// Redact secrets (API keys, bearer and authorization values, private
    /// keys, passwords in connection strings) and replace long base64/hex
    /// blobs and binary content with a marker. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanitize: Option<bool>,
    /// Bytes of a result passed on at most (default 65536); the rest is
    /// cut with a marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 256))]
    pub max_bytes: Option<u64>,
}
