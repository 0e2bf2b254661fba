//! The object store: every object as JSON, one global resourceVersion
//! counter, and a bounded history of change events that watches replay
//! from. Versions of one group+resource share storage.

use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

/// `(group, plural)`.
pub type TypeKey = (String, String);

/// `(namespace or "", name)`.
pub type ObjectKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub type_key: TypeKey,
    pub namespace: String,
    pub kind: EventType,
    pub object: Value,
    /// The object before a modification, to tell selector transitions.
    pub old: Option<Value>,
}

/// How many events watches can resume from before 410 Gone.
pub const HISTORY: usize = 100_000;

#[derive(Debug, Default)]
pub struct Store {
    objects: BTreeMap<TypeKey, BTreeMap<ObjectKey, Value>>,
    rv: u64,
    history: VecDeque<Event>,
    /// Events with `rv <= compacted` are gone.
    compacted: u64,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    /// The next resourceVersion, for an object about to be written.
    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn get(&self, t: &TypeKey, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(t)?.get(key)
    }

    /// Objects of a type, optionally in one namespace, in name order.
    pub fn list(&self, t: &TypeKey, namespace: Option<&str>) -> Vec<&Value> {
        self.objects
            .get(t)
            .map(|m| {
                m.iter()
                    .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
                    .map(|(_, v)| v)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stores an object whose metadata.resourceVersion is already `rv`.
    pub fn put(&mut self, t: &TypeKey, key: ObjectKey, object: Value, rv: u64) -> EventType {
        let old = self
            .objects
            .entry(t.clone())
            .or_default()
            .insert(key.clone(), object.clone());
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Event {
            rv,
            type_key: t.clone(),
            namespace: key.0,
            kind,
            object,
            old,
        });
        kind
    }

    /// Removes an object; the DELETED event carries it with a fresh
    /// resourceVersion, as the API server's does.
    pub fn remove(&mut self, t: &TypeKey, key: &ObjectKey) -> Option<Value> {
        let mut object = self.objects.get_mut(t)?.remove(key)?;
        let rv = self.next_rv();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        self.record(Event {
            rv,
            type_key: t.clone(),
            namespace: key.0.clone(),
            kind: EventType::Deleted,
            object: object.clone(),
            old: None,
        });
        Some(object)
    }

    /// Removes every object of a type (its CRD was deleted).
    pub fn remove_type(&mut self, t: &TypeKey) {
        let keys: Vec<ObjectKey> = self
            .objects
            .get(t)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for key in keys {
            self.remove(t, &key);
        }
        self.objects.remove(t);
    }

    /// Every namespaced object in a namespace (for namespace deletion).
    pub fn keys_in_namespace(&self, namespace: &str) -> Vec<(TypeKey, ObjectKey)> {
        self.objects
            .iter()
            .flat_map(|(t, m)| {
                m.keys()
                    .filter(|(ns, _)| ns == namespace)
                    .map(move |k| (t.clone(), k.clone()))
            })
            .collect()
    }

    fn record(&mut self, event: Event) {
        self.history.push_back(event);
        while self.history.len() > HISTORY {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    /// Drops all history, like etcd compaction: watches from any earlier
    /// resourceVersion get 410 Gone.
    pub fn compact(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
    }

    /// Events after `rv` of one type, or `None` if `rv` is too old.
    pub fn events_after(&self, rv: u64, t: &TypeKey) -> Option<Vec<Event>> {
        if rv < self.compacted {
            return None;
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Some(
            self.history
                .iter()
                .skip(start)
                .filter(|e| &e.type_key == t)
                .cloned()
                .collect(),
        )
    }
}
