//! Leaks among the resources applications registered: unused past their
//! TTL, orphaned (the owner process is gone), or in a dependency cycle
//! (which no release in dependents-first order can ever free). The host
//! marks them with `warden.` labels; this groups them into one finding per
//! owner, and one per cycle.

use std::collections::BTreeMap;

use warden_sdk::LabelPair;
use warden_sdk::detector::Finding;
use warden_sdk::labels::{CYCLE_LABEL, ORPHAN_LABEL, TTL_LABEL};
use warden_sdk::resources::ResourceSet;

/// Handles at or above this are discovered, not registered.
const DISCOVERED_FROM: u64 = 1 << 52;

#[derive(Default)]
struct Tally {
    count: u64,
    bytes: u64,
    /// Longest idle past its TTL (expired) or longest orphaned, ms.
    oldest_ms: i64,
}

impl Tally {
    fn add(&mut self, bytes: u64, age_ms: i64) {
        self.count += 1;
        self.bytes += bytes;
        self.oldest_ms = self.oldest_ms.max(age_ms);
    }
}

/// Returns the findings about registered resources in `set` at `now_ms`.
pub fn check(set: &ResourceSet, now_ms: i64) -> Vec<Finding> {
    let mut expired: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut orphaned: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut cycles: BTreeMap<&str, (Tally, Vec<&str>)> = BTreeMap::new();
    for r in set.iter().filter(|r| r.handle() < DISCOVERED_FROM) {
        let ttl = r.label(TTL_LABEL).and_then(|t| t.parse::<i64>().ok());
        if let (Some(ttl), Some(used)) = (ttl, r.accessed_ms()) {
            let idle = now_ms.saturating_sub(used);
            if idle > ttl {
                expired
                    .entry(r.owner())
                    .or_default()
                    .add(r.size_bytes(), idle);
            }
        }
        if let Some(since) = r.label(ORPHAN_LABEL).and_then(|t| t.parse::<i64>().ok()) {
            orphaned
                .entry(r.owner())
                .or_default()
                .add(r.size_bytes(), now_ms.saturating_sub(since));
        }
        if let Some(cycle) = r.label(CYCLE_LABEL) {
            let (t, owners) = cycles.entry(cycle).or_default();
            t.add(r.size_bytes(), 0);
            if !owners.contains(&r.owner()) {
                owners.push(r.owner());
            }
        }
    }
    let expired = expired.into_iter().map(|(o, t)| {
        finding(
            "expired-resources",
            ("owner", o),
            format!(
                "{} resources of `{o}` ({} bytes) are unused past their TTL, the oldest by {} s; \
                 `{o}` should release them, or a cleanup policy with `release` can",
                t.count,
                t.bytes,
                t.oldest_ms / 1000
            ),
            &[
                ("count", t.count as f64),
                ("bytes", t.bytes as f64),
                ("oldest_idle_s", (t.oldest_ms / 1000) as f64),
            ],
        )
    });
    let orphaned = orphaned.into_iter().map(|(o, t)| {
        finding(
            "orphaned-resources",
            ("owner", o),
            format!(
                "{} resources of `{o}` ({} bytes) outlived the process that registered them, \
                 the oldest by {} s; release them, or let a cleanup policy release orphans",
                t.count,
                t.bytes,
                t.oldest_ms / 1000
            ),
            &[
                ("count", t.count as f64),
                ("bytes", t.bytes as f64),
                ("orphaned_s", (t.oldest_ms / 1000) as f64),
            ],
        )
    });
    let cycles = cycles.into_iter().map(|(cycle, (t, owners))| {
        finding(
            "dependency-cycle",
            ("cycle", cycle),
            format!(
                "{} registered resources (owners: {}) depend on each other in a cycle starting at handle {cycle}; \
                 none can be released dependents-first: remove one dependency \
                 (DELETE /api/v1/resources/{{h}}/dependencies?on=…)",
                t.count,
                owners.join(", ")
            ),
            &[("members", t.count as f64), ("bytes", t.bytes as f64)],
        )
    });
    expired.chain(orphaned).chain(cycles).collect()
}

/// A finding of `pattern` about `subject`, labelled `key=subject`, with
/// `evidence` in order: the three kinds differ only in these.
fn finding(
    pattern: &str,
    (key, subject): (&str, &str),
    recommendation: String,
    evidence: &[(&str, f64)],
) -> Finding {
    let f = Finding::new(pattern, subject)
        .labels(&[LabelPair::new(key.to_owned(), subject.to_owned())])
        .recommend(recommendation);
    evidence
        .iter()
        .fold(f, |f, &(name, value)| f.evidence(name, value))
}
