//! Conformance through the real `kubectl` on the PATH: the same behaviours
//! (a–n) as `conformance_kube.rs`, the way people use them.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![recursion_limit = "256"]

mod common;

use common::{Cluster, repo_root, widget};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn with_widgets() -> Cluster {
    let c = Cluster::start().await;
    let crd = c.write("widget-crd.json", &common::widget_crd().to_string());
    c.kubectl_ok(&["apply", "-f", crd.to_str().unwrap()]);
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.conformance.palisade.dev",
        "--timeout=10s",
    ]);
    c
}

fn apply_json(c: &Cluster, ns: &str, obj: &Value, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["apply", "-n", ns, "-f", "-"];
    args.extend_from_slice(extra);
    c.kubectl_stdin(&args, &obj.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_api_resources_lists_a_new_crd_with_its_short_name_once_established() {
    let c = with_widgets().await;
    let out = c.kubectl_ok(&["api-resources", "--api-group=conformance.palisade.dev"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("widgets"))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "widgets",
            "wdg",
            "conformance.palisade.dev/v1",
            "true",
            "Widget"
        ]
    );
    let core = c.kubectl_ok(&["api-resources", "--api-group="]);
    assert!(
        core.lines()
            .any(|l| l.starts_with("configmaps") && l.contains(" cm ")),
        "{core}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_create_get_delete_and_the_errors_kubectl_prints() {
    let c = Cluster::start().await;
    let ns = c.namespace("kcrud").await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one"}, "data": {"k": "v"}});
    let file = c.write("cm.json", &cm.to_string());
    let path = file.to_str().unwrap();
    assert_eq!(
        c.kubectl_ok(&["create", "-n", &ns, "-f", path]).trim(),
        "configmap/one created"
    );
    let again = c.kubectl(&["create", "-n", &ns, "-f", path]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("Error from server (AlreadyExists)")
            && stderr(&again).contains("configmaps \"one\" already exists"),
        "{}",
        stderr(&again)
    );
    let missing = c.kubectl(&["get", "cm", "nope", "-n", &ns]);
    assert_eq!(
        stderr(&missing).trim(),
        "Error from server (NotFound): configmaps \"nope\" not found"
    );
    let got: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "cm", "one", "-n", &ns, "-o", "json"]))
            .unwrap();
    assert_eq!(got["data"]["k"], "v");
    assert_eq!(got["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert_eq!(
        c.kubectl_ok(&["delete", "cm", "one", "-n", &ns]).trim(),
        "configmap \"one\" deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_get_watch_prints_each_change() {
    let c = Cluster::start().await;
    let ns = c.namespace("kwatch").await;
    let mut child = Command::new("kubectl")
        .args([
            "get",
            "configmaps",
            "-n",
            &ns,
            "--watch",
            "--output-watch-events",
            "--no-headers",
        ])
        .env("KUBECONFIG", &c.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}, "data": {"a": "1"}});
    apply_json(&c, &ns, &cm, &[]);
    c.kubectl_ok(&[
        "patch",
        "cm",
        "w",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ]);
    c.kubectl_ok(&["delete", "cm", "w", "-n", &ns]);
    let mut lines = Vec::new();
    while lines.len() < 3 {
        match rx.recv_timeout(Duration::from_secs(10)) {
            // "EVENT NAME DATA AGE" rows: keep the event and the name.
            Ok(l) => lines.push(l.split_whitespace().take(2).collect::<Vec<_>>().join(" ")),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines, ["ADDED w", "MODIFIED w", "DELETED w"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_patch_status_subresource_and_printer_columns() {
    let c = with_widgets().await;
    let ns = c.namespace("kstatus").await;
    apply_json(&c, &ns, &widget(&ns, "w", json!({"size": 3})), &[]);
    c.kubectl_ok(&[
        "patch",
        "widget",
        "w",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Ready"},"spec":{"size":9}}"#,
    ]);
    let got: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "wdg", "w", "-n", &ns, "-o", "json"])).unwrap();
    assert_eq!(
        (got["status"]["phase"].clone(), got["spec"]["size"].clone()),
        (json!("Ready"), json!(3))
    );
    let table = c.kubectl_ok(&["get", "widgets", "-n", &ns]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "SIZE", "PHASE"]);
    assert_eq!(rows[1], ["w", "3", "Ready"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_server_side_apply_conflicts_and_force_and_json_patch() {
    let c = with_widgets().await;
    let ns = c.namespace("kssa").await;
    let out = apply_json(
        &c,
        &ns,
        &widget(&ns, "w", json!({"size": 2, "tags": ["a"]})),
        &["--server-side", "--field-manager=alice"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "widget.conformance.palisade.dev/w serverside-applied"
    );
    let conflict = apply_json(
        &c,
        &ns,
        &widget(&ns, "w", json!({"size": 5})),
        &["--server-side", "--field-manager=bob"],
    );
    // Alice keeps the tags she still owns; bob takes the size.
    assert!(!conflict.status.success());
    let err = stderr(&conflict);
    assert!(
        err.contains("conflict with \"alice\"") && err.contains(".spec.size"),
        "{err}"
    );
    let forced = apply_json(
        &c,
        &ns,
        &widget(&ns, "w", json!({"size": 5})),
        &["--server-side", "--field-manager=bob", "--force-conflicts"],
    );
    assert!(forced.status.success(), "{}", stderr(&forced));
    let managers = c.kubectl_ok(&[
        "get",
        "widget",
        "w",
        "-n",
        &ns,
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert_eq!(managers, "alice bob");
    c.kubectl_ok(&[
        "patch",
        "widget",
        "w",
        "-n",
        &ns,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/size","value":7}]"#,
    ]);
    assert_eq!(
        c.kubectl_ok(&[
            "get",
            "widget",
            "w",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.size}"
        ]),
        "7"
    );
    // Strategic merge patch is for built-in kinds only, as on a real server.
    let smp = c.kubectl(&[
        "patch",
        "widget",
        "w",
        "-n",
        &ns,
        "-p",
        r#"{"spec":{"size":8}}"#,
    ]);
    assert!(!smp.status.success());
    assert!(
        stderr(&smp).contains("UnsupportedMediaType") || stderr(&smp).contains("unknown format"),
        "{}",
        stderr(&smp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_delete_waits_for_finalizers() {
    let c = Cluster::start().await;
    let ns = c.namespace("kfin").await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["palisade.dev/test"]}});
    apply_json(&c, &ns, &cm, &[]);
    c.kubectl_ok(&["delete", "cm", "held", "-n", &ns, "--wait=false"]);
    let ts = c.kubectl_ok(&[
        "get",
        "cm",
        "held",
        "-n",
        &ns,
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(!ts.is_empty());
    c.kubectl_ok(&[
        "patch",
        "cm",
        "held",
        "-n",
        &ns,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let gone = c.kubectl(&["get", "cm", "held", "-n", &ns]);
    assert!(stderr(&gone).contains("NotFound"), "{}", stderr(&gone));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_secret_string_data_reads_back_as_base64() {
    let c = Cluster::start().await;
    let ns = c.namespace("ksecret").await;
    let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"apiKey": "sk-123"}});
    apply_json(&c, &ns, &s, &[]);
    assert_eq!(
        c.kubectl_ok(&[
            "get",
            "secret",
            "s",
            "-n",
            &ns,
            "-o",
            "jsonpath={.data.apiKey}"
        ]),
        "c2stMTIz"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_replace_with_a_stale_resource_version_is_refused() {
    let c = Cluster::start().await;
    let ns = c.namespace("kocc").await;
    apply_json(
        &c,
        &ns,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"v": "1"}}),
        &[],
    );
    let stale = c.kubectl_ok(&["get", "cm", "c", "-n", &ns, "-o", "json"]);
    c.kubectl_ok(&[
        "patch",
        "cm",
        "c",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"data":{"v":"2"}}"#,
    ]);
    let file = c.write("stale.json", &stale);
    let out = c.kubectl(&["replace", "-n", &ns, "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the object has been modified"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_label_and_field_selectors() {
    let c = Cluster::start().await;
    let ns = c.namespace("ksel").await;
    for (name, app) in [("web-1", "web"), ("web-2", "web"), ("db", "db")] {
        apply_json(
            &c,
            &ns,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": app}}}),
            &[],
        );
    }
    assert_eq!(
        c.kubectl_ok(&["get", "cm", "-n", &ns, "-l", "app=web", "-o", "name"]),
        "configmap/web-1\nconfigmap/web-2\n"
    );
    assert_eq!(
        c.kubectl_ok(&[
            "get",
            "cm",
            "-n",
            &ns,
            "-l",
            "app notin (web)",
            "-o",
            "name"
        ]),
        "configmap/db\n"
    );
    assert_eq!(
        c.kubectl_ok(&[
            "get",
            "cm",
            "-n",
            &ns,
            "--field-selector",
            "metadata.name!=db",
            "-o",
            "name"
        ]),
        "configmap/web-1\nconfigmap/web-2\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j_kubectl_waits_for_what_a_kube_runtime_controller_converges_to() {
    let c = with_widgets().await;
    let ns = c.namespace("kctrl").await;
    let controller = tokio::spawn(common::widget_controller(c.client().await, ns.clone()));
    apply_json(&c, &ns, &widget(&ns, "w", json!({"size": 4})), &[]);
    c.kubectl_ok(&[
        "wait",
        "-n",
        &ns,
        "--for=jsonpath={.status.phase}=Ready",
        "widget/w",
        "--timeout=20s",
    ]);
    c.kubectl_ok(&[
        "wait",
        "-n",
        &ns,
        "--for=create",
        "configmap/w-config",
        "--timeout=20s",
    ]);
    c.kubectl_ok(&["delete", "-n", &ns, "configmap", "w-config"]);
    c.kubectl_ok(&[
        "wait",
        "-n",
        &ns,
        "--for=create",
        "configmap/w-config",
        "--timeout=20s",
    ]);
    let owner = c.kubectl_ok(&[
        "get",
        "-n",
        &ns,
        "configmap",
        "w-config",
        "-o",
        "jsonpath={.metadata.ownerReferences[0].name}",
    ]);
    assert_eq!(owner, "w");
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_validation_errors_name_the_fields_and_explain_reads_the_schema() {
    let c = with_widgets().await;
    let ns = c.namespace("kvalid").await;
    let bad = apply_json(
        &c,
        &ns,
        &widget(&ns, "bad", json!({"size": 0, "color": "pink"})),
        &[],
    );
    assert!(!bad.status.success());
    // kubectl rebuilds the message from the Status causes, one per line.
    let err = stderr(&bad);
    assert!(err.contains("The Widget \"bad\" is invalid: \n"), "{err}");
    assert!(err.contains("* spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1\n"), "{err}");
    assert!(err.contains("* spec.color: Unsupported value: \"pink\": supported values: \"red\", \"green\", \"blue\"\n"), "{err}");
    let unknown = apply_json(
        &c,
        &ns,
        &widget(&ns, "typo", json!({"size": 1, "szie": 2})),
        &[],
    );
    assert!(
        !unknown.status.success(),
        "kubectl validates strictly by default"
    );
    assert!(
        stderr(&unknown).contains("unknown field \"spec.szie\""),
        "{}",
        stderr(&unknown)
    );
    let explain = c.kubectl_ok(&["explain", "widget.spec.size"]);
    assert!(explain.contains("How big."), "{explain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_the_projects_crds_and_examples_apply_and_the_invalid_example_is_rejected() {
    let c = Cluster::start().await;
    let root = repo_root();
    c.kubectl_ok(&["apply", "-f", root.join("crds").to_str().unwrap()]);
    for crd in ["aipolicies", "toolgrants", "approvals"] {
        c.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{crd}.palisade.dev"),
            "--timeout=10s",
        ]);
    }
    apply_json(
        &c,
        "default",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "clinic"}}),
        &[],
    );
    let out = c.kubectl_ok(&[
        "apply",
        "-f",
        root.join("examples/clinic-assistant.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(
        out,
        "aipolicy.palisade.dev/clinic-assistant created\ntoolgrant.palisade.dev/lab-migration created\n"
    );
    let table = c.kubectl_ok(&["get", "aip", "-n", "clinic"]);
    assert!(
        table.starts_with("NAME")
            && table.contains("ENFORCEMENT")
            && table.contains("clinic-assistant   Enforce"),
        "{table}"
    );
    let bad = c.kubectl(&[
        "apply",
        "-f",
        root.join("examples/invalid/aipolicy-unknown-provider.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("spec.routing.rules: Invalid value: \"array\": every spec.routing.rules[].provider must name one of spec.providers"),
        "{}",
        stderr(&bad)
    );
    let explain = c.kubectl_ok(&["explain", "aipolicy.spec.suspend"]);
    assert!(explain.contains("Policy-wide kill switch"), "{explain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l_listing_across_namespaces() {
    let c = Cluster::start().await;
    let a = c.namespace("kns-a").await;
    let b = c.namespace("kns-b").await;
    for ns in [&a, &b] {
        apply_json(
            &c,
            ns,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "same", "labels": {"suite": "kl"}}}),
            &[],
        );
    }
    let all = c.kubectl_ok(&[
        "get",
        "cm",
        "-A",
        "-l",
        "suite=kl",
        "-o",
        "jsonpath={.items[*].metadata.namespace}",
    ]);
    let mut found: Vec<&str> = all.split_whitespace().collect();
    found.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(found, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m_token_review_and_access_review_created_with_kubectl_answer_from_fixtures() {
    let c = Cluster::start().await;
    let Some(sim) = c.sim_only("token and access fixtures") else {
        return;
    };
    sim.add_token(
        "agent-token",
        palisade_kube_sim::UserInfo {
            username: "system:serviceaccount:clinic:intake".into(),
            uid: "u".into(),
            groups: vec![],
        },
    );
    sim.allow(palisade_kube_sim::AccessRule {
        user: "alice".into(),
        verb: "approve".into(),
        group: "palisade.dev".into(),
        resource: "approvals".into(),
        namespace: "*".into(),
    });
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "agent-token"}});
    let out: Value = serde_json::from_str(&stdout(
        &c.kubectl_stdin(&["create", "-f", "-", "-o", "json"], &review.to_string()),
    ))
    .unwrap();
    assert_eq!(
        out["status"]["user"]["username"],
        "system:serviceaccount:clinic:intake"
    );
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                     "spec": {"user": "alice", "resourceAttributes": {"verb": "approve", "group": "palisade.dev", "resource": "approvals", "namespace": "clinic"}}});
    let out: Value = serde_json::from_str(&stdout(
        &c.kubectl_stdin(&["create", "-f", "-", "-o", "json"], &sar.to_string()),
    ))
    .unwrap();
    assert_eq!(out["status"]["allowed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_the_kube_sim_binary_prints_its_url_and_serves_kubectl() {
    let dir = std::env::temp_dir().join(format!("kube-sim-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["--port", "0", "--kubeconfig", kubeconfig.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    assert!(url.trim().starts_with("http://127.0.0.1:"), "{url}");
    let out = Command::new("kubectl")
        .args(["get", "namespaces", "-o", "name"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "namespace/default\nnamespace/kube-public\nnamespace/kube-system\n"
    );
}
