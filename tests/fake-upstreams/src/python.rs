//! Python clients for tests — the official `openai` SDK, the Helm library
//! (`helm-python-sdk`) — each in a virtualenv filled from PyPI, created
//! once per directory and reused.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A Python interpreter with `openai` importable, from the virtualenv at
/// `venv` (created and filled on first use).
pub fn python_with_openai(venv: &Path) -> PathBuf {
    python_with(venv, "openai>=1.40", "openai")
}

/// A Python interpreter from the virtualenv at `venv` in which `module`
/// imports, installing `requirement` from PyPI on first use. Panics with
/// the fix when Python or PyPI are missing: a suite that needs the client
/// never skips.
#[allow(clippy::panic)]
pub fn python_with(venv: &Path, requirement: &str, module: &str) -> PathBuf {
    let python = venv.join("bin/python");
    let has_sdk = |p: &Path| {
        Command::new(p)
            .args(["-c", &format!("import {module}")])
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.exists() && has_sdk(&python) {
        return python;
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        panic!("python3 -m venv failed (Debian: apt-get install python3-venv)");
    }
    // Twice: a download cut short on a busy machine is worth one retry.
    let install = || {
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                requirement,
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    let pip = install() || install();
    if !pip || !has_sdk(&python) {
        panic!("pip install {requirement} failed (is PyPI reachable?)");
    }
    python
}
