//! Watches that one malformed object cannot stall. A typed list fails as a
//! whole when any item does not deserialize (a field of the wrong type
//! stored before the CRD schema tightened, a hand-edited object), and a
//! watcher that keeps failing its list never delivers anything. So the
//! operator watches untyped objects and converts each one on its own: an
//! object that does not convert is logged, counted
//! (`palisade_operator_reconcile_errors_total{kind="malformed_object"}`)
//! and skipped, and everything else flows. An object that was good and
//! becomes malformed keeps its last good version in the cache.
//!
//! With `--watch-namespaces`, [`reflect`] runs one watcher and one store per
//! namespace (see [`crate::scope`]) and never lists cluster-wide.

use futures_util::stream::{BoxStream, select_all};
use futures_util::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Watches `K` in `namespaces` (every namespace when empty), each
/// namespace into a store of its own, resilient to malformed objects and
/// retried with backoff. The stream yields a unit per change (or the
/// watch error), from every namespace merged.
pub fn reflect<K>(
    client: &Client,
    namespaces: &[String],
    config: watcher::Config,
    metrics: &Arc<crate::metrics::OperatorMetrics>,
) -> (
    crate::scope::Stores<K>,
    BoxStream<'static, Result<(), watcher::Error>>,
)
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let resource = ApiResource::erase::<K>(&());
    let mut stores = Vec::new();
    let mut streams = Vec::new();
    for api in crate::scope::dynamic_apis(client, namespaces, &resource) {
        let (store, writer) = reflector::store::<K>();
        stores.push(store);
        streams.push(
            reflector::reflector(writer, typed(api, config.clone(), Arc::clone(metrics)))
                .default_backoff()
                .touched_objects()
                .map(|r| r.map(|_| ()))
                .boxed(),
        );
    }
    (crate::scope::Stores(stores), select_all(streams).boxed())
}

/// `watcher(api)`, converting each object to `K` on its own.
pub fn typed<K>(
    api: Api<DynamicObject>,
    config: watcher::Config,
    metrics: Arc<crate::metrics::OperatorMetrics>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Send + 'static,
{
    let resource = ApiResource::erase::<K>(&());
    watcher(api, config).filter_map(move |event| {
        let metrics = Arc::clone(&metrics);
        let kind = resource.kind.clone();
        async move {
            let typed = |o: DynamicObject| -> Option<K> {
                let name = format!(
                    "{}/{}",
                    o.metadata.namespace.as_deref().unwrap_or(""),
                    o.metadata.name.as_deref().unwrap_or("")
                );
                match serde_json::to_value(&o).and_then(serde_json::from_value::<K>) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        tracing::warn!(%kind, object = %name, error = %e, "skipping a malformed object");
                        metrics.errors.with_label_values(&["malformed_object"]).inc();
                        None
                    }
                }
            };
            match event {
                Err(e) => Some(Err(e)),
                Ok(watcher::Event::Init) => Some(Ok(watcher::Event::Init)),
                Ok(watcher::Event::InitDone) => Some(Ok(watcher::Event::InitDone)),
                Ok(watcher::Event::InitApply(o)) => typed(o).map(|k| Ok(watcher::Event::InitApply(k))),
                Ok(watcher::Event::Apply(o)) => typed(o).map(|k| Ok(watcher::Event::Apply(k))),
                Ok(watcher::Event::Delete(o)) => typed(o).map(|k| Ok(watcher::Event::Delete(k))),
            }
        }
    })
}
