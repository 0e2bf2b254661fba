//! A real MCP server for tests: `mcp/upstream_server.py`, built with the
//! official MCP Python SDK (PyPI `mcp`), served over Streamable HTTP on
//! loopback. It takes only `Authorization: Bearer <token>` and logs every
//! request it receives (one JSON line each) to a file.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A Python with the MCP SDK, in the virtualenv at `venv` (made once).
pub fn python_with_mcp(venv: &Path) -> PathBuf {
    crate::python::python_with(venv, &[("mcp>=1.9", "mcp"), ("uvicorn", "uvicorn")])
}

/// The running server, stopped when dropped.
#[derive(Debug)]
pub struct McpServer {
    child: Child,
    /// Its endpoint, `http://127.0.0.1:PORT/mcp`.
    pub url: String,
}

impl McpServer {
    /// Starts it with `python` (see [`python_with_mcp`]): it takes only
    /// `token`, logs requests to `log`, and answers in plain JSON instead
    /// of server-sent events when `json`.
    pub fn start(python: &Path, token: &str, log: &Path, json: bool) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/mcp/upstream_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg("0")
            .env("MCP_UPSTREAM_TOKEN", token)
            .env("MCP_UPSTREAM_LOG", log)
            .env("MCP_JSON_RESPONSE", if json { "1" } else { "0" })
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {script}: {e}"));
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            panic!("the MCP server printed {line:?} instead of its address");
        };
        let url = url.to_owned();
        Self { child, url }
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
