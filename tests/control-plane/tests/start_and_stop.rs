//! The kit itself: what start.sh promises (users, token issuer, admission
//! policies served) and that nothing outlives a control plane, whether it
//! is dropped or fails to start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_control_plane::{ControlPlane, Options, User};
use std::process::Command;

/// Whether `pid` runs (a zombie waiting for init to reap it does not).
fn alive(pid: &str) -> bool {
    let out = Command::new("ps")
        .args(["-o", "stat=", "-p", pid])
        .output()
        .unwrap();
    let stat = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    !stat.is_empty() && !stat.starts_with('Z')
}

fn running(pid_file: &std::path::Path) -> Option<String> {
    let pid = std::fs::read_to_string(pid_file).ok()?.trim().to_owned();
    alive(&pid).then_some(pid)
}

#[test]
fn users_tokens_and_admission_policies_are_real_and_nothing_is_left_running() {
    let cp = ControlPlane::start("kit");
    let whoami = cp.kubectl_ok(
        User::Approver,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(whoami, "approver");
    // RBAC is enforced: the agent user has no rights of its own.
    let denied = cp.kubectl(User::Agent, &["get", "secrets", "-n", "clinic"]);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("forbidden"));
    // The ServiceAccount token issuer: a token from `kubectl create token`
    // authenticates as that ServiceAccount.
    let sa = cp.service_account_kubeconfig("clinic", "intake-agent");
    let who = cp.kubectl_as(
        &sa,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&who.stdout),
        "system:serviceaccount:clinic:intake-agent"
    );
    let resources = cp.kubectl_ok(
        User::Admin,
        &[
            "api-resources",
            "--api-group=admissionregistration.k8s.io",
            "-o",
            "name",
        ],
    );
    assert!(
        resources.contains("validatingadmissionpolicies"),
        "{resources}"
    );
    assert!(
        resources.contains("mutatingadmissionpolicies"),
        "{resources}"
    );

    let dir = cp.dir().to_path_buf();
    let pids: Vec<String> = ["apiserver.pid", "etcd.pid"]
        .iter()
        .map(|f| running(&dir.join(f)).unwrap())
        .collect();
    drop(cp);
    for pid in pids {
        assert!(!alive(&pid), "process {pid} outlived its control plane");
    }
}

#[test]
fn a_server_without_mutating_admission_policy_serves_none() {
    let cp = ControlPlane::start_with(
        "no-map",
        Options {
            without_mutating_admission_policy: true,
            ..Options::default()
        },
    );
    let resources = cp.kubectl_ok(
        User::Admin,
        &[
            "api-resources",
            "--api-group=admissionregistration.k8s.io",
            "-o",
            "name",
        ],
    );
    assert!(
        resources.contains("validatingadmissionpolicies"),
        "{resources}"
    );
    assert!(
        !resources.contains("mutatingadmissionpolicies"),
        "{resources}"
    );
}

#[test]
fn a_failed_start_leaves_nothing_running() {
    let dir = std::env::temp_dir().join(format!("palisade-cp-fail-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/start.sh"))
        .arg(&dir)
        .env("PALISADE_APISERVER_ARGS", "--no-such-flag")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kube-apiserver exited"), "{stderr}");
    assert!(stderr.contains("unknown flag: --no-such-flag"), "{stderr}");
    // Neither etcd nor the API server (both name files in `dir` on their
    // command lines) outlives the failed start.
    let left = Command::new("pgrep")
        .args(["-af", &dir.display().to_string()])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A control plane held in a `static` is never dropped: the watchdog
/// start.sh leaves behind must stop it once its owner exits, however it
/// exits. (It used to remove its own pid file, run stop.sh in its own
/// process and have stop.sh kill it: every suite with a shared cluster left
/// an API server and etcd running after CI.)
#[test]
fn a_control_plane_whose_owner_exits_without_stopping_it_is_stopped() {
    let dir = std::env::temp_dir().join(format!("palisade-cp-orphan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The owner: a process that exits when told to, never calling stop.sh.
    let mut owner = Command::new("sleep").arg("600").spawn().unwrap();
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/start.sh"))
        .arg(&dir)
        .env("PALISADE_CONTROL_PLANE_OWNER", owner.id().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pids: Vec<String> = ["apiserver.pid", "etcd.pid"]
        .iter()
        .map(|f| running(&dir.join(f)).unwrap())
        .collect();
    owner.kill().unwrap();
    owner.wait().unwrap();
    // The watchdog looks every 0.5 s; stop.sh gives each process a second
    // on SIGTERM before SIGKILL.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pids.iter().any(|p| alive(p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let left: Vec<&String> = pids.iter().filter(|p| alive(p)).collect();
    for pid in &left {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    assert!(
        left.is_empty(),
        "processes {left:?} outlived their owner by 30 s"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
