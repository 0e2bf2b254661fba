//! Python clients for tests — the official `openai` SDK, the Helm library
//! (`helm-python-sdk`) — each in a virtualenv filled from PyPI, created
//! once per directory and reused.
//!
//! Tests of one binary run in parallel and several share a virtualenv, so
//! creating and filling one holds an exclusive lock on `VENV.lock`: two
//! `pip install`s into one half-made virtualenv break each other (CI on a
//! clean clone failed that way on 2026-12-03).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A Python interpreter with `openai` importable, from the virtualenv at
/// `venv` (created and filled on first use).
pub fn python_with_openai(venv: &Path) -> PathBuf {
    python_with(venv, &[("openai>=1.40", "openai")])
}

/// A Python interpreter from the virtualenv at `venv` in which every
/// `(requirement, module)` pair's module imports, installing the missing
/// requirements from PyPI on first use. Panics with the fix when Python or
/// PyPI are missing: a suite that needs the client never skips.
pub fn python_with(venv: &Path, packages: &[(&str, &str)]) -> PathBuf {
    let lock_path = venv.with_extension("lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));

    let python = venv.join("bin/python");
    let imports = |module: &str| {
        python.exists()
            && Command::new(&python)
                .args(["-c", &format!("import {module}")])
                .status()
                .is_ok_and(|s| s.success())
    };
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, module)| !imports(module))
        .map(|(requirement, _)| *requirement)
        .collect();
    if missing.is_empty() {
        return python;
    }
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv)
            .status();
        if !made.is_ok_and(|s| s.success()) {
            panic!("python3 -m venv failed (Debian: apt-get install python3-venv)");
        }
    }
    // Twice: a download cut short on a busy machine is worth one retry.
    let install = || {
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(&missing)
            .status()
            .is_ok_and(|s| s.success())
    };
    let pip = install() || install();
    if !pip || packages.iter().any(|(_, module)| !imports(module)) {
        panic!(
            "pip install {} failed (is PyPI reachable?)",
            missing.join(" ")
        );
    }
    python
}
