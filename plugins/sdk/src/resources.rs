//! Resources as the host sends them: one string table per batch, records that
//! point into it, and borrowed views that read like plain structs.

use crate::__bindings::types as wit;

pub use wit::ResourceKind;

/// A batch of resources. Strings are not copied per resource: each view borrows
/// from the batch's string table.
#[derive(Debug, Clone)]
pub struct ResourceSet {
    raw: wit::ResourceSet,
}

impl ResourceSet {
    /// Wraps a set received from the host.
    pub fn from_raw(raw: wit::ResourceSet) -> Self {
        ResourceSet { raw }
    }

    /// Returns a builder, for tests of a plugin as a pure function.
    pub fn builder() -> ResourceSetBuilder {
        ResourceSetBuilder::default()
    }

    /// Returns the number of resources.
    pub fn len(&self) -> usize {
        self.raw.items.len()
    }

    /// Returns true if and only if the set holds no resource.
    pub fn is_empty(&self) -> bool {
        self.raw.items.is_empty()
    }

    /// Returns the resource at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<Resource<'_>> {
        self.raw.items.get(index).map(|raw| Resource {
            set: &self.raw,
            raw,
            index: index as u32,
        })
    }

    /// Returns every resource, in the host's order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Resource<'_>> + '_ {
        self.raw
            .items
            .iter()
            .enumerate()
            .map(|(index, raw)| Resource {
                set: &self.raw,
                raw,
                index: index as u32,
            })
    }
}

/// One resource of a [`ResourceSet`].
#[derive(Clone, Copy)]
pub struct Resource<'a> {
    set: &'a wit::ResourceSet,
    raw: &'a wit::TrackedResource,
    index: u32,
}

fn text<'a>(set: &'a wit::ResourceSet, t: wit::Text) -> &'a str {
    let start = t.offset as usize;
    set.strings
        .get(start..start + t.len as usize)
        .unwrap_or_default()
}

impl<'a> Resource<'a> {
    /// Returns its index in the set; decisions refer to resources by it.
    pub fn index(&self) -> u32 {
        self.index
    }
    /// Returns the host's stable handle for it.
    pub fn handle(&self) -> u64 {
        self.raw.handle
    }
    /// Returns what kind of resource it is.
    pub fn kind(&self) -> ResourceKind {
        self.raw.kind
    }
    /// Returns its path (files, directories) or name (everything else).
    pub fn name(&self) -> &'a str {
        text(self.set, self.raw.name)
    }
    /// Returns its owner, or `""` when unknown.
    pub fn owner(&self) -> &'a str {
        text(self.set, self.raw.owner)
    }
    /// Returns its size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.raw.size_bytes
    }
    /// Returns when it was created, in ms since the epoch.
    pub fn created_ms(&self) -> Option<i64> {
        self.raw.created_ms
    }
    /// Returns when its content last changed, in ms since the epoch.
    pub fn modified_ms(&self) -> Option<i64> {
        self.raw.modified_ms
    }
    /// Returns when it was last used, in ms since the epoch.
    pub fn accessed_ms(&self) -> Option<i64> {
        self.raw.accessed_ms
    }
    /// Returns the process it belongs to.
    pub fn pid(&self) -> Option<u32> {
        self.raw.pid
    }
    /// Returns its labels.
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let set = self.set;
        let start = self.raw.labels_start as usize;
        let end = start + self.raw.labels_len as usize;
        set.labels
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .map(move |l| (text(set, l.key), text(set, l.value)))
    }
    /// Returns the value of the label `key`, if it has one.
    pub fn label(&self, key: &str) -> Option<&'a str> {
        self.labels().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl std::fmt::Debug for Resource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("index", &self.index)
            .field("kind", &self.kind())
            .field("name", &self.name())
            .field("size_bytes", &self.size_bytes())
            .finish()
    }
}

/// Fields of one resource for [`ResourceSetBuilder::push`].
#[derive(Debug, Clone, Default)]
pub struct NewResource<'a> {
    /// What kind of resource it is (`temp-file` by default).
    pub kind: Option<ResourceKind>,
    /// Path or name.
    pub name: &'a str,
    /// Owner.
    pub owner: &'a str,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Creation time, ms since the epoch.
    pub created_ms: Option<i64>,
    /// Modification time, ms since the epoch.
    pub modified_ms: Option<i64>,
    /// Access time, ms since the epoch.
    pub accessed_ms: Option<i64>,
    /// Owning process.
    pub pid: Option<u32>,
    /// Labels.
    pub labels: &'a [(&'a str, &'a str)],
}

/// Builds a [`ResourceSet`] in the host's layout.
#[derive(Debug, Default)]
pub struct ResourceSetBuilder {
    raw: wit::ResourceSet,
}

impl Default for wit::ResourceSet {
    fn default() -> Self {
        wit::ResourceSet {
            strings: String::new(),
            labels: Vec::new(),
            items: Vec::new(),
        }
    }
}

impl ResourceSetBuilder {
    fn intern(&mut self, s: &str) -> wit::Text {
        let offset = self.raw.strings.len() as u32;
        self.raw.strings.push_str(s);
        wit::Text {
            offset,
            len: s.len() as u32,
        }
    }

    /// Adds a resource and returns its index.
    pub fn push(&mut self, r: NewResource<'_>) -> u32 {
        let name = self.intern(r.name);
        let owner = self.intern(r.owner);
        let labels_start = self.raw.labels.len() as u32;
        for (k, v) in r.labels {
            let key = self.intern(k);
            let value = self.intern(v);
            self.raw.labels.push(wit::Label { key, value });
        }
        let index = self.raw.items.len() as u32;
        self.raw.items.push(wit::TrackedResource {
            handle: u64::from(index),
            kind: r.kind.unwrap_or(ResourceKind::TempFile),
            name,
            owner,
            size_bytes: r.size_bytes,
            created_ms: r.created_ms,
            modified_ms: r.modified_ms,
            accessed_ms: r.accessed_ms,
            pid: r.pid,
            labels_start,
            labels_len: r.labels.len() as u32,
        });
        index
    }

    /// Returns the finished set.
    pub fn build(self) -> ResourceSet {
        ResourceSet { raw: self.raw }
    }
}

/// Which resources [`list`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these kinds; all when empty.
    pub kinds: Vec<ResourceKind>,
    /// Only names starting with this.
    pub name_prefix: Option<String>,
    /// At most this many.
    pub limit: Option<u32>,
}

/// Returns the resources the host tracks that match `filter`.
pub fn list(filter: Filter) -> crate::Result<ResourceSet> {
    let raw = crate::__bindings::host::list_resources(&wit::ResourceFilter {
        kinds: filter.kinds,
        name_prefix: filter.name_prefix,
        limit: filter.limit,
    })?;
    Ok(ResourceSet::from_raw(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_read_back_what_the_builder_wrote() {
        let mut b = ResourceSet::builder();
        b.push(NewResource {
            name: "/tmp/a",
            size_bytes: 3,
            labels: &[("app", "x"), ("tier", "1")],
            ..Default::default()
        });
        b.push(NewResource {
            name: "/tmp/bé",
            owner: "svc",
            ..Default::default()
        });
        let set = b.build();
        assert_eq!(set.len(), 2);
        let a = set.get(0).unwrap();
        assert_eq!(a.name(), "/tmp/a");
        assert_eq!(a.label("tier"), Some("1"));
        assert_eq!(a.label("nope"), None);
        let b = set.get(1).unwrap();
        assert_eq!((b.name(), b.owner(), b.index()), ("/tmp/bé", "svc", 1));
        assert_eq!(b.labels().count(), 0);
    }
}
