//! Resources applications register: a handle per object, with its kind, name,
//! owner, size, times and labels; released when the application says so.

use std::collections::BTreeMap;
use std::sync::RwLock;

use crate::plugin::records::{NewResource, ResourceFilter, ResourceKind, ResourceSet, TimestampMs};

/// What an application says about a resource it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Its kind.
    pub kind: ResourceKind,
    /// Path or name.
    pub name: String,
    /// Owner.
    pub owner: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Owning process.
    pub pid: Option<u32>,
    /// Labels.
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct Entry {
    reg: Registration,
    created_ms: TimestampMs,
    accessed_ms: TimestampMs,
}

/// The registry. Handles are never reused.
#[derive(Debug, Default)]
pub struct Registry {
    inner: RwLock<(u64, BTreeMap<u64, Entry>)>,
}

impl Registry {
    /// Registers a resource at `now_ms` and returns its handle.
    pub fn register(&self, reg: Registration, now_ms: TimestampMs) -> u64 {
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        let handle = g.0;
        g.1.insert(
            handle,
            Entry {
                reg,
                created_ms: now_ms,
                accessed_ms: now_ms,
            },
        );
        handle
    }

    /// Marks a resource as used at `now_ms`; returns false if the handle is unknown.
    pub fn touch(&self, handle: u64, now_ms: TimestampMs) -> bool {
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        g.1.get_mut(&handle)
            .map(|e| e.accessed_ms = now_ms)
            .is_some()
    }

    /// Forgets a resource; returns false if the handle is unknown.
    pub fn release(&self, handle: u64) -> bool {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .remove(&handle)
            .is_some()
    }

    /// Returns the resources matching `filter`, oldest handle first.
    pub fn list(&self, filter: &ResourceFilter) -> ResourceSet {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
        let mut set = ResourceSet::default();
        for (handle, e) in g.1.iter() {
            if set.len() >= limit {
                break;
            }
            if !filter.kinds.is_empty() && !filter.kinds.contains(&e.reg.kind) {
                continue;
            }
            if filter
                .name_prefix
                .as_deref()
                .is_some_and(|p| !e.reg.name.starts_with(p))
            {
                continue;
            }
            let labels: Vec<(&str, &str)> = e
                .reg
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            set.push(NewResource {
                handle: *handle,
                kind: Some(e.reg.kind),
                name: &e.reg.name,
                owner: &e.reg.owner,
                size_bytes: e.reg.size_bytes,
                created_ms: Some(e.created_ms),
                modified_ms: None,
                accessed_ms: Some(e.accessed_ms),
                pid: e.reg.pid,
                labels: &labels,
            });
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(kind: ResourceKind, name: &str) -> Registration {
        Registration {
            kind,
            name: name.into(),
            owner: "svc".into(),
            size_bytes: 10,
            pid: None,
            labels: vec![("pool".into(), "a".into())],
        }
    }

    #[test]
    fn register_filter_touch_release() {
        let r = Registry::default();
        let a = r.register(reg(ResourceKind::AppObject, "cache/a"), 100);
        let _b = r.register(reg(ResourceKind::Socket, "conn/1"), 100);
        let c = r.register(reg(ResourceKind::AppObject, "cache/c"), 100);
        let only_cache = r.list(&ResourceFilter {
            kinds: vec![ResourceKind::AppObject],
            name_prefix: Some("cache/".into()),
            limit: None,
        });
        assert_eq!(only_cache.len(), 2);
        assert_eq!(only_cache.name(1), Some("cache/c"));
        assert!(r.touch(a, 500));
        let all = r.list(&ResourceFilter::default());
        assert_eq!(all.accessed_ms(0), Some(500));
        assert!(r.release(c) && !r.release(c));
        assert_eq!(
            r.list(&ResourceFilter {
                limit: Some(1),
                ..Default::default()
            })
            .len(),
            1
        );
        assert_eq!(r.list(&ResourceFilter::default()).len(), 2);
    }
}
