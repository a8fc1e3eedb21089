//! Counts of the registered resources and their bytes, by kind and by
//! owner (`GET /api/v1/resources/summary`).

use super::*;

/// Resources and their bytes, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Resources.
    pub count: u64,
    /// The sum of their `size_bytes`.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

/// One owner's resources in a [`Summary`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OwnerTally {
    /// The owner (empty: registered without one).
    pub owner: String,
    /// Its resources.
    #[serde(flatten)]
    pub tally: Tally,
}

/// What [`Registry::summary`] counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Every registered resource.
    pub total: Tally,
    /// By kind, by the kind's name.
    pub by_kind: BTreeMap<&'static str, Tally>,
    /// The owners with the most resources, most first (ties by name).
    pub by_owner: Vec<OwnerTally>,
    /// The other owners, together.
    pub others: OthersTally,
}

/// The owners a [`Summary`] does not list one by one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OthersTally {
    /// How many owners.
    pub owners: u64,
    /// Their resources.
    #[serde(flatten)]
    pub tally: Tally,
}

impl Registry {
    /// Counts the registered resources and their bytes, in all, by kind and
    /// by owner: the `top` owners with the most resources one by one, the
    /// rest together. Reads every resource under the read lock.
    pub fn summary(&self, top: usize) -> Summary {
        let g = self.read();
        let mut s = Summary::default();
        // Keyed by the shared owner's address: no string hashed per entry.
        let mut owners: std::collections::HashMap<*const u8, (Arc<str>, Tally)> =
            std::collections::HashMap::new();
        for e in g.entries.iter() {
            s.total.add(e.size_bytes);
            s.by_kind
                .entry(e.kind.name())
                .or_default()
                .add(e.size_bytes);
            owners
                .entry(e.owner.as_ptr())
                .or_insert_with(|| (Arc::clone(&e.owner), Tally::default()))
                .1
                .add(e.size_bytes);
        }
        drop(g);
        let mut all: Vec<(Arc<str>, Tally)> = owners.into_values().collect();
        all.sort_unstable_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
        for (_, tally) in all.iter().skip(top) {
            s.others.owners += 1;
            s.others.tally.count += tally.count;
            s.others.tally.bytes = s.others.tally.bytes.saturating_add(tally.bytes);
        }
        all.truncate(top);
        s.by_owner = all
            .into_iter()
            .map(|(owner, tally)| OwnerTally {
                owner: owner.to_string(),
                tally,
            })
            .collect();
        s
    }
}
