//! The console (issue 27) in a real browser: Debian's Chromium driven by
//! Playwright (`console/console.mjs`, `playwright-core` from npm, which
//! never downloads a browser) against the real gateway binary, with the
//! agent's calls made by the official `openai` SDK (`sdk/console_agent.py`).
//! A decision made by an SDK call shows in the live stream within a
//! second, an alert shows, and an approval decided on the page lets the
//! held call run once. The screenshots in `docs/console/` are this test's
//! (`PALISADE_SCREENSHOTS=docs/console`; by default they go to the target
//! directory).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use palisade_fake_upstreams::{FakeOpenAi, Script};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::console::{AUDITOR, KEY, ON, OPERATOR};

/// `playwright-core` installed from the lock file (npm ci) once; a fresh
/// checkout has no `node_modules`.
fn playwright(dir: &Path) {
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .expect("npm (Node.js) is needed for the console's browser test");
    assert!(
        out.status.success(),
        "npm ci in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_streams_decisions_shows_alerts_and_decides_approvals_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does"
    );
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    tokio::task::spawn_blocking({
        let dir = here.join("console");
        move || playwright(&dir)
    })
    .await
    .unwrap();
    let python = common::openai_python().await;
    let model = FakeOpenAi::start(Script::Text("hello, browser".into()))
        .await
        .unwrap();
    let (mut gateway, url) = common::console::start("console-browser", &model.base_url(), ON);
    let shots = std::env::var("PALISADE_SCREENSHOTS")
        .map(|d| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(d))
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::task::spawn_blocking({
        let shots = shots.clone();
        move || {
            Command::new("node")
                .arg(here.join("console/console.mjs"))
                .current_dir(here.join("console"))
                .env("CONSOLE_URL", &url)
                .env("AUDITOR_TOKEN", AUDITOR)
                .env("OPERATOR_TOKEN", OPERATOR)
                .env("PYTHON", python)
                .env("AGENT_SCRIPT", here.join("sdk/console_agent.py"))
                .env("PALISADE_URL", &url)
                .env("PALISADE_KEY", KEY)
                .env("SCREENSHOTS", shots)
                .env("CHROMIUM", chromium)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    gateway.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for shot in ["overview", "decisions", "decision", "approvals"] {
        let png = shots.join(format!("console-{shot}.png"));
        assert!(
            std::fs::metadata(&png).unwrap().len() > 10_000,
            "{}",
            png.display()
        );
    }
    println!("{stdout}");
}
