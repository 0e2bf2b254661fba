//! A real Kubernetes control plane (`tests/control-plane/`: etcd and
//! kube-apiserver) with Palisade's CRDs installed and served.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use palisade_control_plane::ControlPlane;
use std::time::{Duration, Instant};

/// A fresh control plane (started off the runtime: it blocks for seconds)
/// and an admin client to it. Namespace `clinic` exists already; the CRDs
/// do not (see [`cluster_with_crds`]).
pub async fn cluster(name: &'static str) -> (ControlPlane, kube::Client) {
    let cp = tokio::task::spawn_blocking(move || ControlPlane::start(name))
        .await
        .unwrap();
    let client = cp.client().await;
    (cp, client)
}

/// [`cluster`] with the `AIPolicy`, `ToolGrant` and `Approval` CRDs
/// installed and Established.
pub async fn cluster_with_crds(name: &'static str) -> (ControlPlane, kube::Client) {
    let (cp, client) = cluster(name).await;
    install_crds(&client).await;
    (cp, client)
}

/// Creates the CRDs `palisade-crds` generates and waits until the API
/// server serves each (Established): a real API server installs a CRD's
/// handler asynchronously, so a create right after would fail.
pub async fn install_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for (_, yaml) in palisade_crds::manifests::crd_manifests().unwrap() {
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).unwrap();
        names.push(crd.metadata.name.clone().unwrap());
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let started = Instant::now();
    for name in names {
        loop {
            if established(&crds.get(&name).await.unwrap()) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "CRD {name} was not Established within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}
