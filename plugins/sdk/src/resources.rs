//! Resources as the host sends them: one string table per batch, records that
//! point into it, and borrowed views that read like plain structs.

use crate::__bindings::types as wit;

pub use wit::ResourceKind;

/// A batch of resources. Strings are not copied per resource: each view borrows
/// from the batch's string table and reads its row of each column.
#[derive(Debug, Clone)]
pub struct ResourceSet {
    raw: wit::ResourceSet,
}

/// The value the host uses for a time it does not know.
const UNKNOWN_TIME: i64 = i64::MIN;

const KINDS: [ResourceKind; 8] = [
    ResourceKind::TempFile,
    ResourceKind::File,
    ResourceKind::Directory,
    ResourceKind::FileDescriptor,
    ResourceKind::Socket,
    ResourceKind::Thread,
    ResourceKind::Process,
    ResourceKind::AppObject,
];

impl ResourceSet {
    #[doc(hidden)]
    pub fn raw(&self) -> &wit::ResourceSet {
        &self.raw
    }

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
        self.raw.handles.len()
    }

    /// Returns true if and only if the set holds no resource.
    pub fn is_empty(&self) -> bool {
        self.raw.handles.is_empty()
    }

    /// Returns the resource at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<Resource<'_>> {
        (index < self.len()).then_some(Resource {
            set: &self.raw,
            index,
        })
    }

    /// Returns every resource, in the host's order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Resource<'_>> + '_ {
        (0..self.len()).map(|index| Resource {
            set: &self.raw,
            index,
        })
    }
}

/// One resource of a [`ResourceSet`]: a row of its columns.
#[derive(Clone, Copy)]
pub struct Resource<'a> {
    set: &'a wit::ResourceSet,
    index: usize,
}

/// Returns the string at `offset, len` of `strings`, or `""` if the host sent
/// a span that does not fit (it never should).
fn span(strings: &str, offset: u32, len: u32) -> &str {
    let start = offset as usize;
    strings.get(start..start + len as usize).unwrap_or_default()
}

fn time(column: &[i64], i: usize) -> Option<i64> {
    column.get(i).copied().filter(|t| *t != UNKNOWN_TIME)
}

impl<'a> Resource<'a> {
    fn pair(&self, column: &'a [u32]) -> &'a str {
        match column.get(2 * self.index..2 * self.index + 2) {
            Some([offset, len]) => span(&self.set.strings, *offset, *len),
            _ => "",
        }
    }

    /// Returns its index in the set; decisions refer to resources by it.
    pub fn index(&self) -> u32 {
        self.index as u32
    }
    /// Returns the host's stable handle for it.
    pub fn handle(&self) -> u64 {
        self.set.handles[self.index]
    }
    /// Returns what kind of resource it is.
    pub fn kind(&self) -> ResourceKind {
        let ordinal = self.set.kinds.get(self.index).copied().unwrap_or(0);
        KINDS
            .get(ordinal as usize)
            .copied()
            .unwrap_or(ResourceKind::AppObject)
    }
    /// Returns its path (files, directories) or name (everything else).
    pub fn name(&self) -> &'a str {
        self.pair(&self.set.names)
    }
    /// Returns its owner, or `""` when unknown.
    pub fn owner(&self) -> &'a str {
        self.pair(&self.set.owners)
    }
    /// Returns its size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.set.sizes.get(self.index).copied().unwrap_or(0)
    }
    /// Returns when it was created, in ms since the epoch.
    pub fn created_ms(&self) -> Option<i64> {
        time(&self.set.created, self.index)
    }
    /// Returns when its content last changed, in ms since the epoch.
    pub fn modified_ms(&self) -> Option<i64> {
        time(&self.set.modified, self.index)
    }
    /// Returns when it was last used, in ms since the epoch.
    pub fn accessed_ms(&self) -> Option<i64> {
        time(&self.set.accessed, self.index)
    }
    /// Returns the process it belongs to.
    pub fn pid(&self) -> Option<u32> {
        self.set.pids.get(self.index).copied().filter(|p| *p != 0)
    }
    /// Returns its labels.
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let set = self.set;
        let (first, count) = match set.label_ranges.get(2 * self.index..2 * self.index + 2) {
            Some([first, count]) => (*first as usize, *count as usize),
            _ => (0, 0),
        };
        set.labels
            .get(4 * first..4 * (first + count))
            .unwrap_or_default()
            .chunks_exact(4)
            .map(move |l| {
                (
                    span(&set.strings, l[0], l[1]),
                    span(&set.strings, l[2], l[3]),
                )
            })
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
#[derive(Debug, Clone, Copy, Default)]
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
#[derive(Debug)]
pub struct ResourceSetBuilder {
    raw: wit::ResourceSet,
}

impl Default for ResourceSetBuilder {
    fn default() -> Self {
        let raw = wit::ResourceSet {
            strings: String::new(),
            handles: Vec::new(),
            kinds: Vec::new(),
            names: Vec::new(),
            owners: Vec::new(),
            sizes: Vec::new(),
            created: Vec::new(),
            modified: Vec::new(),
            accessed: Vec::new(),
            pids: Vec::new(),
            label_ranges: Vec::new(),
            labels: Vec::new(),
        };
        ResourceSetBuilder { raw }
    }
}

impl ResourceSetBuilder {
    fn intern(&mut self, s: &str) -> [u32; 2] {
        let offset = self.raw.strings.len() as u32;
        self.raw.strings.push_str(s);
        [offset, s.len() as u32]
    }

    /// Adds a resource and returns its index.
    pub fn push(&mut self, r: NewResource<'_>) -> u32 {
        let index = self.raw.handles.len() as u32;
        let name = self.intern(r.name);
        let owner = self.intern(r.owner);
        let first_label = (self.raw.labels.len() / 4) as u32;
        for (k, v) in r.labels {
            let key = self.intern(k);
            let value = self.intern(v);
            self.raw
                .labels
                .extend_from_slice(&[key[0], key[1], value[0], value[1]]);
        }
        let raw = &mut self.raw;
        raw.handles.push(u64::from(index));
        let kind = r.kind.unwrap_or(ResourceKind::TempFile);
        raw.kinds
            .push(KINDS.iter().position(|k| *k == kind).unwrap_or(0) as u8);
        raw.names.extend_from_slice(&name);
        raw.owners.extend_from_slice(&owner);
        raw.sizes.push(r.size_bytes);
        raw.created.push(r.created_ms.unwrap_or(UNKNOWN_TIME));
        raw.modified.push(r.modified_ms.unwrap_or(UNKNOWN_TIME));
        raw.accessed.push(r.accessed_ms.unwrap_or(UNKNOWN_TIME));
        raw.pids.push(r.pid.unwrap_or(0));
        raw.label_ranges
            .extend_from_slice(&[first_label, r.labels.len() as u32]);
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
    let raw = crate::host::list_resources(&wit::ResourceFilter {
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
            kind: Some(ResourceKind::Socket),
            pid: Some(42),
            modified_ms: Some(7),
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
        assert_eq!(
            (b.kind(), b.pid(), b.modified_ms(), b.created_ms()),
            (ResourceKind::Socket, Some(42), Some(7), None)
        );
        assert_eq!(b.labels().count(), 0);
        assert_eq!(
            (a.kind(), a.pid(), a.size_bytes()),
            (ResourceKind::TempFile, None, 3)
        );
        assert_eq!(
            a.labels().collect::<Vec<_>>(),
            vec![("app", "x"), ("tier", "1")]
        );
    }
}
