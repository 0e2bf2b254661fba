//! Which namespaces the operator reads (`--watch-namespaces`). Empty means
//! every namespace (one cluster-wide list/watch per kind). Otherwise every
//! list and watch of AIPolicies, ToolGrants and Approvals is made in
//! exactly those namespaces, one per namespace, and nothing goes
//! cluster-wide: the chart then binds the operator's role only in those
//! namespaces, and a cluster-wide request would be refused (403) forever.
//!
//! Each namespace gets its own watcher *and its own reflector store*: a
//! store's initial list swaps its whole content in at `InitDone`, so two
//! watchers feeding one store would wipe each other's objects.

use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use std::sync::Arc;

/// Parses `ns1,ns2` (the flag, or `PALISADE_WATCH_NAMESPACES`): blanks
/// and empty items are ignored, duplicates dropped (first kept); each name
/// must be a valid namespace name, so a typo fails at start-up instead of
/// silently watching nothing.
pub fn parse(list: &str) -> Result<Vec<String>, String> {
    palisade_crds::namespaces::parse_list(list).map_err(|e| e.to_string())
}

/// Whether objects of `namespace` are in scope (every namespace when
/// `namespaces` is empty).
pub fn contains(namespaces: &[String], namespace: &str) -> bool {
    namespaces.is_empty() || namespaces.iter().any(|n| n == namespace)
}

/// Keeps the objects in scope. The watches are already namespaced; this
/// makes sure that nothing from another namespace ever reaches the bundle
/// or the Approval lifecycle, whatever a cache holds.
pub fn in_scope<K: Resource>(namespaces: &[String], objects: Vec<K>) -> Vec<K> {
    if namespaces.is_empty() {
        return objects;
    }
    objects
        .into_iter()
        .filter(|o| contains(namespaces, o.meta().namespace.as_deref().unwrap_or("")))
        .collect()
}

/// How the scope reads in logs.
pub fn describe(namespaces: &[String]) -> String {
    if namespaces.is_empty() {
        "all namespaces (cluster-wide)".into()
    } else {
        format!("namespaces {}", namespaces.join(", "))
    }
}

/// The untyped APIs to list and watch `resource` through: one cluster-wide
/// API, or one per namespace.
pub fn dynamic_apis(
    client: &Client,
    namespaces: &[String],
    resource: &ApiResource,
) -> Vec<Api<DynamicObject>> {
    if namespaces.is_empty() {
        vec![Api::all_with(client.clone(), resource)]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced_with(client.clone(), ns, resource))
            .collect()
    }
}

/// The typed APIs of `K`, like [`dynamic_apis`].
pub fn apis<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

/// One reflector store per watched namespace, read as one.
#[derive(Debug)]
pub struct Stores<K: Resource<DynamicType = ()> + 'static>(pub Vec<Store<K>>);

impl<K> Stores<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// Every object of every store.
    pub fn state(&self) -> Vec<Arc<K>> {
        self.0.iter().flat_map(Store::state).collect()
    }

    /// Waits until every store has finished its initial list.
    pub async fn wait_until_ready(&self) {
        for s in &self.0 {
            let _ = s.wait_until_ready().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn a_comma_separated_list_is_trimmed_deduplicated_and_empty_means_every_namespace() {
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(parse(" , "), Ok(vec![]));
        assert_eq!(
            parse(" clinic, billing,,clinic "),
            Ok(vec!["clinic".to_owned(), "billing".to_owned()])
        );
    }

    #[test]
    fn a_name_that_is_not_a_namespace_is_refused_at_start_up() {
        for bad in [
            "Clinic",
            "clinic_1",
            "-clinic",
            "clinic-",
            "a/b",
            &"x".repeat(64),
        ] {
            let err = parse(&format!("billing,{bad}")).unwrap_err();
            assert!(err.contains("is not a namespace name"), "{bad}: {err}");
        }
    }

    #[test]
    fn objects_of_namespaces_that_are_not_watched_are_left_out() {
        let object = |ns: &str| {
            let mut o = ConfigMap::default();
            o.metadata.namespace = Some(ns.into());
            o
        };
        let all = vec![object("clinic"), object("billing"), object("other")];
        let namespaces = |g: &[ConfigMap]| {
            g.iter()
                .map(|g| g.metadata.namespace.clone().unwrap_or_default())
                .collect::<Vec<_>>()
        };
        assert_eq!(namespaces(&in_scope(&[], all.clone())).len(), 3);
        let watched = ["clinic".to_owned(), "billing".to_owned()];
        assert_eq!(
            namespaces(&in_scope(&watched, all)),
            vec!["clinic", "billing"]
        );
        assert!(contains(&watched, "clinic"));
        assert!(!contains(&watched, "other"));
        assert!(contains(&[], "other"), "empty = cluster-wide");
    }

    #[tokio::test]
    async fn with_namespaces_every_api_is_namespaced_and_none_is_cluster_wide() {
        // The URLs are built locally: no request is made.
        let client =
            Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let resource = ApiResource::erase::<palisade_crds::Approval>(&());
        let urls = |apis: Vec<Api<DynamicObject>>| {
            apis.iter()
                .map(|a| a.resource_url().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            urls(dynamic_apis(&client, &[], &resource)),
            vec!["/apis/palisade.dev/v1alpha1/approvals"]
        );
        let watched = ["clinic".to_owned(), "billing".to_owned()];
        assert_eq!(
            urls(dynamic_apis(&client, &watched, &resource)),
            vec![
                "/apis/palisade.dev/v1alpha1/namespaces/clinic/approvals",
                "/apis/palisade.dev/v1alpha1/namespaces/billing/approvals"
            ]
        );
        let typed: Vec<String> = apis::<palisade_crds::AIPolicy>(&client, &watched)
            .iter()
            .map(|a| a.resource_url().to_owned())
            .collect();
        assert!(
            typed.iter().all(|u| u.contains("/namespaces/")),
            "{typed:?}"
        );
    }
}
