//! Watches that one malformed object cannot stall. A typed list fails as a
//! whole when any item does not deserialize (a field of the wrong type
//! stored before the CRD schema tightened, a hand-edited object), and a
//! watcher that keeps failing its list never delivers anything. So the
//! operator watches untyped objects and converts each one on its own: an
//! object that does not convert is logged, counted
//! (`palisade_operator_reconcile_errors_total{kind="malformed_object"}`)
//! and skipped, and everything else flows. An object that was good and
//! becomes malformed keeps its last good version in the cache.

use futures_util::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// `watcher(Api::<K>::all(..))`, resilient to malformed objects.
pub fn all<K>(
    client: Client,
    config: watcher::Config,
    metrics: Arc<crate::metrics::OperatorMetrics>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Send + 'static,
{
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
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
