//! What the registry shows: resources as a [`ResourceSet`] for plugins,
//! bounded by bytes ([`Registry::list`], [`Registry::list_bounded`]), and
//! one resource as the API shows it ([`View`]).

use super::*;

impl Registry {
    /// Returns the resources matching `filter`, oldest handle first. A
    /// resource with a TTL carries it as the label [`TTL_LABEL`], an orphan
    /// the label [`ORPHAN_LABEL`], a member of a dependency cycle the label
    /// [`CYCLE_LABEL`]. Stops (with what it has) where a set's
    /// string table is full.
    pub fn list(&self, filter: &ResourceFilter) -> ResourceSet {
        match self.list_bounded(filter, usize::MAX) {
            Ok(set) => set,
            Err(partial) => partial.0,
        }
    }

    /// Like [`Registry::list`], copying at most `max_bytes` (as
    /// [`ResourceSet::bytes`] counts them): past it, returns what it had
    /// copied and at least the bytes the whole answer needs (boxed: a set is
    /// large to move through every `Result`).
    pub fn list_bounded(
        &self,
        filter: &ResourceFilter,
        max_bytes: usize,
    ) -> Result<ResourceSet, Box<(ResourceSet, usize)>> {
        let g = self.read();
        let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
        let mut set = ResourceSet::default();
        // Cycles are searched only among resources with dependencies, so a
        // registry without any pays nothing, and only after the dependencies
        // change, so one with some pays the search once, not per list.
        let in_cycle: std::collections::HashMap<u64, String> = g
            .graph
            .cycles()
            .iter()
            .flat_map(|c| {
                let id = self.handles.encode(c[0]).to_string();
                c.iter().map(move |&seq| (seq, id.clone()))
            })
            .collect();
        for e in g.entries.iter() {
            if set.len() >= limit {
                break;
            }
            if !matches(filter, e) {
                continue;
            }
            let needed = set.bytes().saturating_add(e.bytes());
            if needed > max_bytes {
                return Err(Box::new((set, needed)));
            }
            let ttl = e.ttl().map(|t| t.to_string());
            let orphan = e.orphan().map(|t| t.to_string());
            let labels: Vec<(&str, &str)> = e
                .text
                .labels()
                .chain(ttl.as_deref().map(|t| (TTL_LABEL, t)))
                .chain(orphan.as_deref().map(|t| (ORPHAN_LABEL, t)))
                .chain(in_cycle.get(&e.seq).map(|c| (CYCLE_LABEL, c.as_str())))
                .collect();
            let pushed = set.try_push(NewResource {
                handle: self.handles.encode(e.seq),
                kind: Some(e.kind),
                name: e.text.name(),
                owner: &e.owner,
                size_bytes: e.size_bytes,
                created_ms: Some(e.created_ms),
                modified_ms: None,
                accessed_ms: Some(e.accessed_ms),
                pid: e.pid(),
                labels: &labels,
            });
            if pushed.is_none() {
                // The string table is full: what fits is the answer.
                let needed = set.bytes().saturating_add(e.bytes());
                return Err(Box::new((set, needed)));
            }
        }
        Ok(set)
    }
}

pub(super) fn matches(filter: &ResourceFilter, e: &Entry) -> bool {
    (filter.kinds.is_empty() || filter.kinds.contains(&e.kind))
        && filter
            .name_prefix
            .as_deref()
            .is_none_or(|p| e.text.name().starts_with(p))
}

pub(super) fn view(handle: u64, e: &Entry, request: Option<u64>) -> View {
    View {
        handle,
        kind: e.kind.name(),
        name: e.text.name().to_owned(),
        owner: e.owner.to_string(),
        size_bytes: e.size_bytes,
        pid: e.pid(),
        labels: e
            .text
            .labels()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ttl_ms: e.ttl(),
        created_ms: e.created_ms,
        accessed_ms: e.accessed_ms,
        expires_ms: e.expires_ms(),
        orphan: e.orphan().is_some(),
        orphan_since_ms: e.orphan(),
        release_requested: request,
    }
}
