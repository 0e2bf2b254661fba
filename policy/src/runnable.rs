//! Tools Palisade runs itself (`spec.tools.run`): the built-in `sql_query`,
//! `read_file` and `write_file`, and registered HTTP tools, with the limits
//! each runs under. Pure data: the gateway's `tools/` module runs them.
//!
//! A tool named here is decided by the same rules, grants, conditions,
//! approvals and kill switches as any other; being declared only means that
//! once allowed, the gateway (not the agent) runs it, with credentials the
//! agent never sees.

use crate::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The built-in SQL tool's name.
pub const SQL_QUERY: &str = "sql_query";
/// The built-in file tools' names.
pub const READ_FILE: &str = "read_file";
pub const WRITE_FILE: &str = "write_file";

/// Everything a policy lets Palisade run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunnableTools {
    /// `sql_query`, when any database is listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<SqlTool>,
    /// `read_file` (and `write_file` when a root is `ReadWrite`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FileTools>,
    /// Registered HTTP tools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpTool>,
    /// How many rounds the server-side tool loop may take.
    #[serde(default = "RunnableTools::default_max_steps")]
    pub max_steps: u32,
    /// When the chat tool loop offers these tools to the model.
    #[serde(default)]
    pub offer: ToolOffer,
    /// What is done to tool results before a model or client sees them.
    #[serde(default)]
    pub results: ResultSettings,
}

impl Default for RunnableTools {
    fn default() -> Self {
        Self {
            sql: None,
            files: None,
            http: Vec::new(),
            max_steps: Self::DEFAULT_MAX_STEPS,
            offer: ToolOffer::default(),
            results: ResultSettings::default(),
        }
    }
}

impl RunnableTools {
    pub const DEFAULT_MAX_STEPS: u32 = 5;

    /// Nothing declared and every setting at its default (left out of a
    /// bundle's JSON, so bundles without it keep their revision).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    fn default_max_steps() -> u32 {
        Self::DEFAULT_MAX_STEPS
    }

    /// The tool Palisade runs under this name, if any.
    pub fn get(&self, name: &str) -> Option<Runnable<'_>> {
        match name {
            SQL_QUERY => self.sql.as_ref().map(Runnable::Sql),
            READ_FILE => self.files.as_ref().map(Runnable::ReadFile),
            WRITE_FILE => self
                .files
                .as_ref()
                .filter(|f| f.roots.iter().any(|r| r.access == FileAccess::ReadWrite))
                .map(Runnable::WriteFile),
            _ => self
                .http
                .iter()
                .find(|t| t.name == name)
                .map(Runnable::Http),
        }
    }

    /// Every tool this policy runs, in a stable order.
    pub fn all(&self) -> impl Iterator<Item = Runnable<'_>> {
        [SQL_QUERY, READ_FILE, WRITE_FILE]
            .into_iter()
            .filter_map(|n| self.get(n))
            .chain(self.http.iter().map(Runnable::Http))
    }

    pub fn is_empty(&self) -> bool {
        self.all().next().is_none()
    }
}

/// When a chat request's model is shown the tools Palisade runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToolOffer {
    /// Only those the request's `tools` name (by function name; the
    /// policy's schema replaces whatever the request described).
    #[default]
    WhenRequested,
    /// All of them, in every chat completion of the policy's agents.
    Always,
}

/// One tool Palisade runs.
#[derive(Clone, Copy, Debug)]
pub enum Runnable<'a> {
    Sql(&'a SqlTool),
    ReadFile(&'a FileTools),
    WriteFile(&'a FileTools),
    Http(&'a HttpTool),
}

impl Runnable<'_> {
    pub fn name(&self) -> &str {
        match self {
            Self::Sql(_) => SQL_QUERY,
            Self::ReadFile(_) => READ_FILE,
            Self::WriteFile(_) => WRITE_FILE,
            Self::Http(t) => &t.name,
        }
    }

    /// The tool as an OpenAI `tools[]` entry (`{"type": "function", ...}`):
    /// what a model is shown.
    pub fn schema(&self) -> Value {
        let (description, parameters) = match self {
            Self::Sql(s) => {
                let names: Vec<&str> = s.databases.iter().map(|d| d.name.as_str()).collect();
                (
                    format!(
                        "Runs one read-only SQL query against a named database and returns its columns and rows (at most {} rows). Databases: {}.",
                        s.max_rows,
                        names.join(", ")
                    ),
                    json!({
                        "type": "object",
                        "properties": {
                            "database": {"type": "string", "enum": names},
                            "query": {"type": "string", "description": "one SELECT statement"}
                        },
                        "required": ["database", "query"],
                        "additionalProperties": false
                    }),
                )
            }
            Self::ReadFile(f) | Self::WriteFile(f) => {
                let write = matches!(self, Self::WriteFile(_));
                let roots: Vec<&str> = f
                    .roots
                    .iter()
                    .filter(|r| !write || r.access == FileAccess::ReadWrite)
                    .map(|r| r.name.as_str())
                    .collect();
                let mut properties = json!({
                    "root": {"type": "string", "enum": roots},
                    "path": {"type": "string", "description": "a relative path below the root"}
                });
                let mut required = vec!["root", "path"];
                if write {
                    properties["content"] =
                        json!({"type": "string", "description": "the file's new content (UTF-8)"});
                    required.push("content");
                }
                (
                    if write {
                        format!(
                            "Creates or replaces a text file below a named root (at most {} bytes).",
                            f.max_bytes
                        )
                    } else {
                        format!(
                            "Reads a text file below a named root (at most {} bytes).",
                            f.max_bytes
                        )
                    },
                    json!({
                        "type": "object",
                        "properties": properties,
                        "required": required,
                        "additionalProperties": false
                    }),
                )
            }
            Self::Http(t) => (t.description.clone(), t.parameters.clone()),
        };
        json!({
            "type": "function",
            "function": {
                "name": self.name(),
                "description": description,
                "parameters": parameters,
            }
        })
    }
}

/// `sql_query`: read-only queries over the databases listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqlTool {
    pub databases: Vec<SqlDatabase>,
    pub max_rows: u32,
    pub max_result_bytes: u64,
    pub timeout_ms: u64,
}

impl SqlTool {
    pub const DEFAULT_MAX_ROWS: u32 = 1_000;
    pub const DEFAULT_MAX_RESULT_BYTES: u64 = 256 * 1024;
    pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;

    pub fn database(&self, name: &str) -> Option<&SqlDatabase> {
        self.databases.iter().find(|d| d.name == name)
    }
}

/// One database `sql_query` may read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqlDatabase {
    pub name: String,
    pub engine: SqlEngine,
}

/// Where a database is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SqlEngine {
    /// A SQLite file (an absolute path in the gateway's filesystem).
    Sqlite { path: String },
    /// A PostgreSQL connection URL, from a Secret.
    Postgres { url: SecretString },
}

/// `read_file` / `write_file`: only below the roots listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileTools {
    pub roots: Vec<FileRoot>,
    pub max_bytes: u64,
}

impl FileTools {
    pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024;

    pub fn root(&self, name: &str) -> Option<&FileRoot> {
        self.roots.iter().find(|r| r.name == name)
    }
}

/// One directory the file tools may use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileRoot {
    pub name: String,
    /// An absolute directory path in the gateway's filesystem.
    pub path: String,
    pub access: FileAccess,
    /// Globs over the relative path a file must match (`*` also matches
    /// `/`); `None`: any file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globs: Option<crate::NameGlobs>,
}

impl FileRoot {
    /// Whether the file at `relative` (below this root) may be used.
    pub fn allows(&self, relative: &str) -> bool {
        self.globs.as_ref().is_none_or(|g| g.is_match(relative))
    }
}

/// What the file tools may do below a root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileAccess {
    Read,
    ReadWrite,
}

/// A registered HTTP tool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTool {
    pub name: String,
    pub description: String,
    /// JSON schema of the arguments, shown to models.
    pub parameters: Value,
    pub url: String,
    pub method: HttpMethod,
    /// Sent as `Authorization: Bearer ...`; never shown to the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<SecretString>,
    pub timeout_ms: u64,
    pub max_response_bytes: u64,
}

impl HttpTool {
    pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
    pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 256 * 1024;
}

/// How a registered HTTP tool is called: `POST` / `PUT` send the
/// arguments as the JSON body, `GET` / `DELETE` as query parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpMethod {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "DELETE")]
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }
}

/// What is done to tool results before they reach a model or a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResultSettings {
    /// Secrets redacted and blobs replaced (on by default).
    pub sanitize: bool,
    /// Results longer than this are cut (with a marker).
    pub max_bytes: u64,
}

impl ResultSettings {
    pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024;
}

impl Default for ResultSettings {
    fn default() -> Self {
        Self {
            sanitize: true,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(access: FileAccess) -> FileTools {
        FileTools {
            roots: vec![FileRoot {
                name: "notes".into(),
                path: "/data/notes".into(),
                access,
                globs: None,
            }],
            max_bytes: 10,
        }
    }

    #[test]
    fn write_file_exists_only_with_a_read_write_root() {
        let read_only = RunnableTools {
            files: Some(files(FileAccess::Read)),
            ..RunnableTools::default()
        };
        assert!(read_only.get(READ_FILE).is_some());
        assert!(read_only.get(WRITE_FILE).is_none());
        let writable = RunnableTools {
            files: Some(files(FileAccess::ReadWrite)),
            ..RunnableTools::default()
        };
        let names: Vec<_> = writable.all().map(|r| r.name().to_owned()).collect();
        assert_eq!(names, [READ_FILE, WRITE_FILE]);
        let schema = writable.get(WRITE_FILE).unwrap().schema();
        assert_eq!(schema["function"]["parameters"]["required"][2], "content");
        assert!(RunnableTools::default().is_empty());
    }
}
