//! The official `openai` Python SDK as a test client: a virtualenv with
//! the package from PyPI, created once per directory and reused.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A Python interpreter with `openai` importable, from the virtualenv at
/// `venv` (created and filled on first use). Panics with the fix when
/// Python or PyPI are missing: a suite that needs the SDK never skips.
#[allow(clippy::panic)]
pub fn python_with_openai(venv: &Path) -> PathBuf {
    let python = venv.join("bin/python");
    let has_sdk = |p: &Path| {
        Command::new(p)
            .args(["-c", "import openai"])
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
    let pip = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "openai>=1.40",
        ])
        .status();
    if !pip.is_ok_and(|s| s.success()) || !has_sdk(&python) {
        panic!("pip install openai failed (is PyPI reachable?)");
    }
    python
}
