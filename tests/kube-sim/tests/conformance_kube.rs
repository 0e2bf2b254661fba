//! Conformance through kube-rs: every behaviour of
//! `shared/kube-api-conformance.md` (a–n), driven by `kube::Client`,
//! kube-runtime's watcher and a kube-runtime `Controller`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![recursion_limit = "256"]

mod common;

use common::{Cluster, widget};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};
use std::time::Duration;

fn widgets(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("conformance.palisade.dev", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client, ns, &ar)
}

fn dynamic(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

fn cm(name: &str, labels: Value, data: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": data}))
        .unwrap()
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(e) => *e,
        other => panic!("expected an API error, got {other}"),
    }
}

// === a. discovery ===

#[tokio::test]
async fn a_discovery_serves_builtin_groups_and_a_new_crd_at_once() {
    let c = Cluster::start().await;
    let client = c.client().await;
    c.install_widget_crd().await;
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for g in [
        "",
        "apps",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "conformance.palisade.dev",
    ] {
        assert!(
            groups.contains(&g.to_string()),
            "{g} missing from {groups:?}"
        );
    }
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk(
            "conformance.palisade.dev",
            "v1",
            "Widget",
        ))
        .unwrap();
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));
    let raw: Value = client
        .request(
            http::Request::get("/apis/conformance.palisade.dev/v1")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(raw["resources"][0]["shortNames"], json!(["wdg"]));
}

// === b. CRUD ===

#[tokio::test]
async fn b_crud_assigns_identity_and_answers_errors_with_status_objects() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let ns = c.namespace("crud").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let created = api
        .create(
            &PostParams::default(),
            &cm("one", json!({}), json!({"k": "v"})),
        )
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.resource_version.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(api.get("one").await.unwrap().data.unwrap()["k"], "v");

    let dup = api_error(
        api.create(&PostParams::default(), &cm("one", json!({}), json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, "configmaps \"one\" already exists");
    let missing = api_error(api.get("nope").await.unwrap_err());
    assert_eq!(
        (
            missing.code,
            missing.reason.as_str(),
            missing.message.as_str()
        ),
        (404, "NotFound", "configmaps \"nope\" not found")
    );

    let mut changed = created.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let replaced = api
        .replace("one", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    api.delete("one", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error(api.get("one").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn b_generation_counts_spec_changes_only() {
    let c = Cluster::start().await;
    c.install_widget_crd().await;
    let ns = c.namespace("gen").await;
    let api = widgets(c.client().await, &ns);
    let w = api
        .create(
            &PostParams::default(),
            &dynamic(widget(&ns, "w", json!({"size": 2}))),
        )
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    let w = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        w.metadata.generation,
        Some(1),
        "metadata changes do not bump generation"
    );
    let w = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(2));
}

// === c. watch ===

#[tokio::test]
async fn c_watch_streams_changes_resumes_and_sends_bookmarks() {
    let c = Cluster::start().await;
    let ns = c.namespace("watch").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, &ns);
    let first = api
        .create(&PostParams::default(), &cm("a", json!({}), json!({})))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    api.create(&PostParams::default(), &cm("b", json!({}), json!({})))
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();

    // Resuming from `a`'s creation replays exactly what happened after it.
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => seen.push(format!("MODIFIED {}", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.metadata.name.unwrap())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED b", "MODIFIED a", "DELETED b"]);

    // Bookmarks arrive on an idle watch that asks for them.
    let latest = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default()
            }
            .timeout(10),
            &latest,
        )
        .await
        .unwrap()
        .boxed();
    let event = tokio::time::timeout(Duration::from_secs(90), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(event, WatchEvent::Bookmark(_)), "{event:?}");
}

#[tokio::test]
async fn c_a_watch_from_a_compacted_resource_version_gets_410_gone() {
    let c = Cluster::start().await;
    let Some(sim) = c.sim_only("forcing compaction") else {
        return;
    };
    let ns = c.namespace("gone").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, &ns);
    let old = api
        .create(&PostParams::default(), &cm("a", json!({}), json!({})))
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    sim.compact();
    let mut stream = api
        .watch(
            &WatchParams::default(),
            &old.metadata.resource_version.unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn c_kube_runtime_watcher_sees_the_initial_list_and_later_changes() {
    use kube::runtime::watcher::{self, Event};
    let c = Cluster::start().await;
    let ns = c.namespace("watcher").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, &ns);
    api.create(&PostParams::default(), &cm("before", json!({}), json!({})))
        .await
        .unwrap();
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    let mut initial = Vec::new();
    loop {
        match events.try_next().await.unwrap().unwrap() {
            Event::InitApply(o) => initial.push(o.metadata.name.unwrap()),
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(initial, ["before"]);
    api.create(&PostParams::default(), &cm("after", json!({}), json!({})))
        .await
        .unwrap();
    loop {
        if let Event::Apply(o) = events.try_next().await.unwrap().unwrap() {
            assert_eq!(o.metadata.name.as_deref(), Some("after"));
            break;
        }
    }
}

// === d. status subresource ===

#[tokio::test]
async fn d_status_and_spec_are_written_through_their_own_endpoints() {
    let c = Cluster::start().await;
    c.install_widget_crd().await;
    let ns = c.namespace("status").await;
    let api = widgets(c.client().await, &ns);
    let mut w = widget(&ns, "w", json!({"size": 2}));
    w["status"] = json!({"phase": "ignored-on-create"});
    let created = api
        .create(&PostParams::default(), &dynamic(w))
        .await
        .unwrap();
    assert!(
        created.data.get("status").is_none(),
        "status is ignored on create"
    );

    let patched = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"size": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["status"]["phase"], "Ready");
    assert_eq!(
        patched.data["spec"]["size"], 2,
        "the status endpoint ignores spec"
    );
    assert_eq!(patched.metadata.generation, Some(1));

    let main = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Hacked"}, "spec": {"size": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(
        main.data["status"]["phase"], "Ready",
        "the main endpoint ignores status"
    );
    assert_eq!(main.data["spec"]["size"], 3);
    assert_eq!(main.metadata.generation, Some(2));
}

// === e. server-side apply, merge and JSON patch ===

#[tokio::test]
async fn e_server_side_apply_tracks_managers_and_reports_conflicts() {
    let c = Cluster::start().await;
    c.install_widget_crd().await;
    let ns = c.namespace("ssa").await;
    let api = widgets(c.client().await, &ns);
    let mine = PatchParams::apply("alice");
    let theirs = PatchParams::apply("bob");
    let applied = api
        .patch(
            "w",
            &mine,
            &Patch::Apply(widget(&ns, "w", json!({"size": 2, "tags": ["a"]}))),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.generation, Some(1), "apply creates");
    let managers = |o: &DynamicObject| -> Vec<String> {
        o.metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.clone())
            .collect()
    };
    assert_eq!(managers(&applied), ["alice"]);

    let conflict = api_error(
        api.patch(
            "w",
            &theirs,
            &Patch::Apply(widget(&ns, "w", json!({"size": 5}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(
        conflict.message.contains("conflict with \"alice\""),
        "{}",
        conflict.message
    );
    assert!(
        conflict.message.contains(".spec.size"),
        "{}",
        conflict.message
    );

    let forced = api
        .patch(
            "w",
            &theirs.clone().force(),
            &Patch::Apply(widget(&ns, "w", json!({"size": 5}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["size"], 5);
    assert_eq!(managers(&forced), ["alice", "bob"]);

    // Alice drops tags from her configuration: they go away.
    let trimmed = api
        .patch("w", &mine, &Patch::Apply(widget(&ns, "w", json!({}))))
        .await
        .unwrap();
    assert!(
        trimmed.data["spec"].get("tags").is_none(),
        "{:?}",
        trimmed.data
    );
    assert_eq!(trimmed.data["spec"]["size"], 5);

    let merged = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tags": ["x", "y"]}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data["spec"]["tags"], json!(["x", "y"]));
    let jp: json_patch::Patch = serde_json::from_value(json!([{"op": "replace", "path": "/spec/size", "value": 7}, {"op": "remove", "path": "/spec/tags/0"}])).unwrap();
    let patched = api
        .patch("w", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(
        (
            patched.data["spec"]["size"].clone(),
            patched.data["spec"]["tags"].clone()
        ),
        (json!(7), json!(["y"]))
    );
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/size", "value": 1}])).unwrap();
    assert_eq!(
        api_error(
            api.patch("w", &PatchParams::default(), &Patch::<()>::Json(failing))
                .await
                .unwrap_err()
        )
        .code,
        422
    );
}

#[tokio::test]
async fn e_keyed_lists_merge_per_key_between_managers() {
    let c = Cluster::start().await;
    c.install_widget_crd().await;
    let ns = c.namespace("listmap").await;
    let api = widgets(c.client().await, &ns);
    api.patch(
        "w",
        &PatchParams::apply("a"),
        &Patch::Apply(widget(
            &ns,
            "w",
            json!({"size": 1, "parts": [{"name": "x", "count": 1}]}),
        )),
    )
    .await
    .unwrap();
    let both = api
        .patch(
            "w",
            &PatchParams::apply("b"),
            &Patch::Apply(widget(
                &ns,
                "w",
                json!({"parts": [{"name": "y", "count": 2}]}),
            )),
        )
        .await
        .unwrap();
    assert_eq!(
        both.data["spec"]["parts"],
        json!([{"name": "x", "count": 1}, {"name": "y", "count": 2}])
    );
}

// === f. finalizers ===

#[tokio::test]
async fn f_finalizers_hold_an_object_until_they_are_removed() {
    let c = Cluster::start().await;
    let ns = c.namespace("fin").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, &ns);
    let mut obj = cm("held", json!({}), json!({}));
    obj.metadata.finalizers = Some(vec!["palisade.dev/test".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let still = api.get("held").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_error(api.get("held").await.unwrap_err()).code, 404);
}

// === g. Secrets ===

#[tokio::test]
async fn g_secret_string_data_is_folded_into_base64_data() {
    let c = Cluster::start().await;
    let ns = c.namespace("secret").await;
    let api: Api<Secret> = Api::namespaced(c.client().await, &ns);
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"apiKey": "sk-123"}, "data": {"other": "b3RoZXI="}})).unwrap();
    let created = api.create(&PostParams::default(), &s).await.unwrap();
    let data = created.data.unwrap();
    assert_eq!(data["apiKey"].0, b"sk-123");
    assert_eq!(data["other"].0, b"other");
    assert!(created.string_data.is_none());
}

// === h. optimistic concurrency ===

#[tokio::test]
async fn h_a_write_with_a_stale_resource_version_is_a_conflict() {
    let c = Cluster::start().await;
    let ns = c.namespace("occ").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, &ns);
    let stale = api
        .create(
            &PostParams::default(),
            &cm("c", json!({}), json!({"v": "1"})),
        )
        .await
        .unwrap();
    api.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    let err = api_error(
        api.replace("c", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );
}

// === i. selectors ===

#[tokio::test]
async fn i_label_and_field_selectors_filter_lists_and_watches() {
    let c = Cluster::start().await;
    let ns = c.namespace("sel").await;
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, &ns);
    for (name, app, tier) in [
        ("web-1", "web", "front"),
        ("web-2", "web", "back"),
        ("db", "db", "back"),
    ] {
        api.create(
            &PostParams::default(),
            &cm(name, json!({"app": app, "tier": tier}), json!({})),
        )
        .await
        .unwrap();
    }
    let names = async |params: ListParams| -> Vec<String> {
        api.list(&params)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| o.metadata.name.unwrap())
            .collect()
    };
    assert_eq!(
        names(ListParams::default().labels("app=web")).await,
        ["web-1", "web-2"]
    );
    assert_eq!(
        names(ListParams::default().labels("app in (web,db),tier!=front")).await,
        ["db", "web-2"]
    );
    assert_eq!(
        names(ListParams::default().labels("tier,app notin (web)")).await,
        ["db"]
    );
    assert_eq!(
        names(ListParams::default().fields("metadata.name=db")).await,
        ["db"]
    );
    let err = api_error(
        api.list(&ListParams::default().fields("data.x=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);

    let latest = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(
            &WatchParams::default().labels("app=web").timeout(5),
            &latest,
        )
        .await
        .unwrap()
        .boxed();
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    api.patch(
        "web-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "api"}}})),
    )
    .await
    .unwrap();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Deleted(o) => assert_eq!(
            o.metadata.name.as_deref(),
            Some("web-1"),
            "leaving the selector is a DELETED event"
        ),
        other => panic!("{other:?}"),
    }
}

// === j. a Controller converges ===

#[tokio::test]
async fn j_a_kube_runtime_controller_converges_and_reconciles_owned_objects() {
    let c = Cluster::start().await;
    c.install_widget_crd().await;
    let ns = c.namespace("ctrl").await;
    let client = c.client().await;
    let api = widgets(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let handle = tokio::spawn(common::widget_controller(client.clone(), ns.clone()));

    api.create(
        &PostParams::default(),
        &dynamic(widget(&ns, "w", json!({"size": 4}))),
    )
    .await
    .unwrap();
    let converged = async {
        loop {
            let w = api.get("w").await.unwrap();
            if w.data["status"]["phase"] == "Ready"
                && cms.get_opt("w-config").await.unwrap().is_some()
            {
                return w;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let w = tokio::time::timeout(Duration::from_secs(20), converged)
        .await
        .expect("controller converges");
    assert_eq!(w.data["status"]["observedGeneration"], 1);
    // Deleting the owned object wakes the owner's reconcile, which recreates it.
    cms.delete("w-config", &DeleteParams::default())
        .await
        .unwrap();
    let recreated = async {
        loop {
            if let Some(cm) = cms.get_opt("w-config").await.unwrap() {
                return cm;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let cm = tokio::time::timeout(Duration::from_secs(20), recreated)
        .await
        .expect("owned object is recreated");
    assert_eq!(cm.metadata.owner_references.unwrap()[0].name, "w");
    handle.abort();
}

// === k. validation ===

#[tokio::test]
async fn k_custom_resources_are_validated_against_schema_and_cel_with_field_paths() {
    let c = Cluster::start().await;
    c.install_widget_crd().await;
    let ns = c.namespace("valid").await;
    let api = widgets(c.client().await, &ns);
    let err = api_error(
        api.create(
            &PostParams::default(),
            &dynamic(widget(
                &ns,
                "bad",
                json!({"size": 0, "color": "pink", "name": "Abc", "tags": ["a", "b", "c", "d"]}),
            )),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    for expected in [
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
        "spec.color: Unsupported value: \"pink\": supported values: \"red\", \"green\", \"blue\"",
        "spec.name: Invalid value: \"Abc\": spec.name in body should match '^[a-z]+$'",
        "spec.tags: Too many: 4: must have at most 3 items",
    ] {
        assert!(
            err.message.contains(expected),
            "{expected}\nnot in: {}",
            err.message
        );
    }
    assert!(
        err.message
            .starts_with("Widget.conformance.palisade.dev \"bad\" is invalid: ["),
        "{}",
        err.message
    );
    let missing = api_error(
        api.create(
            &PostParams::default(),
            &dynamic(widget(&ns, "bad", json!({}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        missing.message,
        "Widget.conformance.palisade.dev \"bad\" is invalid: spec.size: Required value"
    );

    let cel = api_error(
        api.create(
            &PostParams::default(),
            &dynamic(widget(&ns, "bad", json!({"size": 2, "name": "long"}))),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        cel.message.contains(
            "spec.size: Invalid value: \"integer\": size must be at least the length of name"
        ),
        "{}",
        cel.message
    );

    // Defaults are applied; unknown fields are pruned (or refused under Strict).
    let ok = api
        .create(
            &PostParams::default(),
            &dynamic(widget(
                &ns,
                "ok",
                json!({"size": 2, "bogus": true, "extra": {"free": 1}}),
            )),
        )
        .await
        .unwrap();
    assert_eq!(
        ok.data["spec"],
        json!({"size": 2, "color": "red", "extra": {"free": 1}})
    );
    let strict = PatchParams::apply("strict").validation(kube::api::ValidationDirective::Strict);
    let refused = api_error(
        api.patch(
            "strict",
            &strict,
            &Patch::Apply(widget(&ns, "strict", json!({"size": 2, "bogus": true}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (refused.code, refused.message.as_str()),
        (400, "strict decoding error: unknown field \"spec.bogus\"")
    );

    // Transition rules see oldSelf.
    api.patch(
        "ok",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"locked": "a"}})),
    )
    .await
    .unwrap();
    let immutable = api_error(
        api.patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"locked": "b"}})),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        immutable
            .message
            .contains("spec.locked: Invalid value: \"string\": locked is immutable"),
        "{}",
        immutable.message
    );
}

#[tokio::test]
async fn k_the_projects_crds_accept_the_clinic_example_and_reject_the_invalid_one() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    for (_, yaml) in palisade_crds::manifests::crd_manifests().unwrap() {
        let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_yaml::from_str(&yaml).unwrap();
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("conformance").force(),
            &Patch::Apply(crd),
        )
        .await
        .unwrap();
    }
    let nss: Api<Namespace> = Api::all(client.clone());
    let _ = nss
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "clinic"}})).unwrap(),
        )
        .await;
    let policies: Api<palisade_crds::AIPolicy> = Api::namespaced(client.clone(), "clinic");
    let grants: Api<palisade_crds::ToolGrant> = Api::namespaced(client.clone(), "clinic");
    let example =
        std::fs::read_to_string(common::repo_root().join("examples/clinic-assistant.yaml"))
            .unwrap();
    for doc in serde_yaml::Deserializer::from_str(&example) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        match v["kind"].as_str() {
            Some("AIPolicy") => {
                let created = policies
                    .create(&PostParams::default(), &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap();
                assert_eq!(created.spec.agents.len(), 2);
            }
            Some("ToolGrant") => {
                grants
                    .create(&PostParams::default(), &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let invalid = std::fs::read_to_string(
        common::repo_root().join("examples/invalid/aipolicy-unknown-provider.yaml"),
    )
    .unwrap();
    let bad: palisade_crds::AIPolicy = serde_yaml::from_str(&invalid).unwrap();
    let err = api_error(
        policies
            .create(&PostParams::default(), &bad)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .contains("every spec.routing.rules[].provider must name one of spec.providers"),
        "{}",
        err.message
    );
}

// === l. namespaces ===

#[tokio::test]
async fn l_namespaced_and_cluster_scoped_paths_and_listing_across_namespaces() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let one = c.namespace("ns-a").await;
    let two = c.namespace("ns-b").await;
    for ns in [&one, &two] {
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .create(
                &PostParams::default(),
                &cm("same-name", json!({"suite": "l"}), json!({})),
            )
            .await
            .unwrap();
    }
    let all: Api<ConfigMap> = Api::all(client.clone());
    let found: Vec<String> = all
        .list(&ListParams::default().labels("suite=l"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| o.metadata.namespace.unwrap())
        .filter(|n| *n == one || *n == two)
        .collect();
    assert_eq!(found.len(), 2);
    let nss: Api<Namespace> = Api::all(client.clone());
    assert!(nss.get(&one).await.is_ok());
    let missing: Api<ConfigMap> = Api::namespaced(client, "does-not-exist");
    let err = api_error(
        missing
            .create(&PostParams::default(), &cm("x", json!({}), json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "namespaces \"does-not-exist\" not found")
    );
}

// === m. TokenReview / SubjectAccessReview ===

#[tokio::test]
async fn m_token_and_access_reviews_answer_from_fixtures() {
    use k8s_openapi::api::authentication::v1::TokenReview;
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    let c = Cluster::start().await;
    let Some(sim) = c.sim_only("token and access fixtures") else {
        return;
    };
    sim.add_token(
        "agent-token",
        palisade_kube_sim::UserInfo {
            username: "system:serviceaccount:clinic:intake-agent".into(),
            uid: "u-1".into(),
            groups: vec!["system:serviceaccounts".into()],
        },
    );
    sim.allow(palisade_kube_sim::AccessRule {
        user: "alice".into(),
        verb: "approve".into(),
        group: "palisade.dev".into(),
        resource: "approvals".into(),
        namespace: "clinic".into(),
    });
    let client = c.client().await;
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review = |token: &str| {
        serde_json::from_value::<TokenReview>(
            json!({"spec": {"token": token, "audiences": ["palisade"]}}),
        )
        .unwrap()
    };
    let ok = reviews
        .create(&PostParams::default(), &review("agent-token"))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(ok.authenticated, Some(true));
    assert_eq!(
        ok.user.unwrap().username.as_deref(),
        Some("system:serviceaccount:clinic:intake-agent")
    );
    let bad = reviews
        .create(&PostParams::default(), &review("forged"))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(bad.authenticated, Some(false));

    let sars: Api<SubjectAccessReview> = Api::all(client);
    let ask = |user: &str, verb: &str| {
        serde_json::from_value::<SubjectAccessReview>(json!({"spec": {"user": user, "resourceAttributes": {"verb": verb, "group": "palisade.dev", "resource": "approvals", "namespace": "clinic"}}})).unwrap()
    };
    let allowed = async |user: &str, verb: &str| {
        sars.create(&PostParams::default(), &ask(user, verb))
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed
    };
    assert!(allowed("alice", "approve").await);
    assert!(!allowed("mallory", "approve").await);
    assert!(!allowed("alice", "delete").await);
}

// === n. start-up ===

#[tokio::test]
async fn n_servers_start_on_port_zero_side_by_side() {
    let a = palisade_kube_sim::KubeSim::start().await.unwrap();
    let b = palisade_kube_sim::KubeSim::start().await.unwrap();
    assert_ne!(a.addr().port(), 0);
    assert_ne!(a.addr().port(), b.addr().port());
    let config = kube::Config::new(a.url().parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, "v1.34.0-kube-sim");
}
