//! `temp-files`: the cleanup strategy shipped with Warden for scratch directories.
//!
//! Deletes candidates older than `max_age`, judged by the newest of the chosen
//! timestamps (as systemd-tmpfiles does), then, if what remains is larger than
//! `max_total_bytes`, the oldest remaining ones until it fits.
//!
//! Resources applications registered (when the policy's `scope.kinds` names
//! their kind) are judged the same way and released instead of deleted; one
//! registered with a TTL is also released once it has gone unused for longer
//! than its TTL.
//!
//! ```yaml
//! config:
//!   max_age: 7d            # required
//!   age_by: [modified, accessed]   # default: modified, accessed, created
//!   max_total_bytes: 1073741824    # optional
//!   min_age: 1m            # never touch files younger than this (default 1m)
//!   include: ["*.tmp", "/var/cache/app/**"]  # optional: only these
//! ```
//!
//! `include` globs without a `/` match the last part of the name (`*.tmp`);
//! others match the whole path, `*` within one part and `**` across parts.
//! Directories come after their contents and go only once empty (the host
//! checks), so an old directory whose old files are deleted goes in the
//! same run.
//!
//! ## In a scope others can write to (`/tmp`, a shared upload dir)
//!
//! A file's size is the space it takes on disk (allocated blocks × 512, as
//! the host measures it), not its apparent length: a sparse file made with
//! `truncate -s 10T` weighs nothing and cannot push everyone else's files
//! over `max_total_bytes`. Still, the budget is shared by everyone who can
//! write to the scope: one user who fills it with real data makes the oldest
//! files of the others go first (never those younger than `min_age`). Where
//! that matters, give each user a scope of their own, or rely on `max_age`
//! alone. The policy's `max_actions` cap (a count or a percentage such as
//! `10%`) counts the candidates of the run, so anyone who adds many files
//! also raises what a percentage allows; a count does not move. Files whose
//! names anyone chooses are matched by `include` as they are named: do not
//! make `include` the only guard of what may go.

use serde::Deserialize;
use warden_sdk::cleanup::{CleanupContext, CleanupStrategy, Plan};
use warden_sdk::config::HumanDuration;
use warden_sdk::labels::TTL_LABEL;
use warden_sdk::resources::{Resource, ResourceKind};

/// Deletes a file; releases anything else (an object an application registered).
fn remove(plan: &mut Plan, r: &Resource<'_>, reason: &str) {
    match r.kind() {
        ResourceKind::TempFile | ResourceKind::File | ResourceKind::Directory => {
            plan.delete(r, reason);
        }
        _ => {
            plan.release(r, reason);
        }
    }
}

/// Which timestamp says how old a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stamp {
    /// Content change time.
    Modified,
    /// Last access time.
    Accessed,
    /// Creation (birth) time.
    Created,
}

/// The plugin's `config:` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Files older than this are deleted.
    pub max_age: HumanDuration,
    /// Timestamps that count; the newest of them is the file's age.
    #[serde(default = "default_stamps")]
    pub age_by: Vec<Stamp>,
    /// Budget for the total size of what remains.
    #[serde(default)]
    pub max_total_bytes: Option<u64>,
    /// Files younger than this are never touched, even over budget.
    #[serde(default = "default_min_age")]
    pub min_age: HumanDuration,
    /// Only candidates matching one of these globs; all when empty.
    #[serde(default)]
    pub include: Vec<String>,
}

fn default_stamps() -> Vec<Stamp> {
    vec![Stamp::Modified, Stamp::Accessed, Stamp::Created]
}

fn default_min_age() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}

/// The strategy.
pub struct TempFiles(Config, Vec<(glob::Pattern, bool)>);

/// How `include` globs match: `*` stays within one part of a path.
const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl TempFiles {
    /// Whether `name` is one the policy covers.
    fn included(&self, name: &str) -> bool {
        self.1.is_empty()
            || self.1.iter().any(|(p, whole)| {
                let subject = if *whole {
                    name
                } else {
                    name.rsplit('/').next().unwrap_or(name)
                };
                p.matches_with(subject, MATCH)
            })
    }

    /// Returns the newest of the chosen timestamps, if the file has any.
    fn last_touched(&self, r: &Resource<'_>) -> Option<i64> {
        self.0
            .age_by
            .iter()
            .filter_map(|s| match s {
                Stamp::Modified => r.modified_ms(),
                Stamp::Accessed => r.accessed_ms(),
                Stamp::Created => r.created_ms(),
            })
            .max()
    }
}

impl CleanupStrategy for TempFiles {
    type Config = Config;

    fn new(config: Config) -> warden_sdk::Result<Self> {
        if config.age_by.is_empty() {
            return Err(warden_sdk::Error::at(
                "age_by",
                "must name at least one of modified, accessed, created",
            ));
        }
        let mut include = Vec::with_capacity(config.include.len());
        for (i, g) in config.include.iter().enumerate() {
            let p = glob::Pattern::new(g).map_err(|e| {
                warden_sdk::Error::at(format!("include[{i}]"), format!("`{g}` is not a glob: {e}"))
            })?;
            include.push((p, g.contains('/')));
        }
        Ok(TempFiles(config, include))
    }

    fn plan(&self, ctx: &CleanupContext) -> warden_sdk::Result<Plan> {
        let now = ctx.now_ms();
        let max_age = self.0.max_age.as_millis() as i64;
        let min_age = self.0.min_age.as_millis() as i64;
        let mut plan = Plan::new();
        // Survivors with a known age, for the size budget.
        let mut kept: Vec<(i64, Resource<'_>)> = Vec::new();
        let mut kept_bytes = 0u64;
        for r in ctx.candidates().iter() {
            if !self.included(r.name()) {
                continue;
            }
            // A file with no usable timestamp has no known age: leave it alone.
            let Some(touched) = self.last_touched(&r) else {
                continue;
            };
            let age = now.saturating_sub(touched);
            let ttl_lapsed = r
                .label(TTL_LABEL)
                .and_then(|t| t.parse::<i64>().ok())
                .zip(r.accessed_ms())
                .is_some_and(|(ttl, used)| now.saturating_sub(used) > ttl);
            if age > max_age {
                remove(&mut plan, &r, "older than max_age");
            } else if ttl_lapsed {
                remove(&mut plan, &r, "unused for longer than its TTL");
            } else {
                kept_bytes += r.size_bytes();
                if age >= min_age {
                    kept.push((touched, r));
                }
            }
        }
        if let Some(budget) = self.0.max_total_bytes
            && kept_bytes > budget
        {
            kept.sort_unstable_by_key(|(touched, _)| *touched);
            for (_, r) in kept {
                if kept_bytes <= budget {
                    break;
                }
                kept_bytes -= r.size_bytes();
                remove(&mut plan, &r, "over max_total_bytes, oldest first");
            }
        }
        Ok(plan)
    }
}

warden_sdk::register_cleanup!(TempFiles);

#[cfg(test)]
mod tests {
    use super::*;
    use warden_sdk::Invocation;
    use warden_sdk::cleanup::Decision;
    use warden_sdk::resources::{NewResource, ResourceSet};

    const NOW: i64 = 1_000_000_000_000;
    const MIN: i64 = 60_000;

    fn ctx(files: &[(&str, i64, u64)]) -> CleanupContext {
        let mut b = ResourceSet::builder();
        for (name, age, size) in files {
            b.push(NewResource {
                name,
                size_bytes: *size,
                modified_ms: Some(NOW - age),
                ..Default::default()
            });
        }
        let inv = Invocation {
            policy: "t".into(),
            now_ms: NOW,
            dry_run: false,
        };
        CleanupContext::new(inv, b.build())
    }

    fn strategy(json: &str) -> TempFiles {
        TempFiles::new(serde_json::from_str(json).unwrap()).unwrap()
    }

    #[test]
    fn deletes_only_what_is_older_than_max_age() {
        let s = strategy(r#"{"max_age": "1h"}"#);
        let plan = s
            .plan(&ctx(&[("/t/old", 61 * MIN, 1), ("/t/new", 59 * MIN, 1)]))
            .unwrap();
        assert_eq!(
            plan.decisions(),
            vec![Decision::Delete(0, "older than max_age")]
        );
    }

    #[test]
    fn the_newest_chosen_timestamp_decides() {
        let s = strategy(r#"{"max_age": "1h"}"#);
        let mut b = ResourceSet::builder();
        b.push(NewResource {
            name: "/t/read-recently",
            modified_ms: Some(NOW - 300 * MIN),
            accessed_ms: Some(NOW - MIN),
            ..Default::default()
        });
        let inv = Invocation {
            policy: "t".into(),
            now_ms: NOW,
            dry_run: false,
        };
        assert!(
            s.plan(&CleanupContext::new(inv.clone(), b.build()))
                .unwrap()
                .is_empty()
        );
        let by_mtime = strategy(r#"{"max_age": "1h", "age_by": ["modified"]}"#);
        let mut b = ResourceSet::builder();
        b.push(NewResource {
            name: "/x",
            modified_ms: Some(NOW - 300 * MIN),
            accessed_ms: Some(NOW),
            ..Default::default()
        });
        assert_eq!(
            by_mtime
                .plan(&CleanupContext::new(inv, b.build()))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn over_budget_deletes_oldest_first_and_spares_young_files() {
        let s = strategy(r#"{"max_age": "1d", "max_total_bytes": 100}"#);
        let files = [
            ("/a", 30 * MIN, 60),
            ("/b", 20 * MIN, 60),
            ("/c", 10 * MIN, 60),
            ("/young", 0, 60),
        ];
        let plan = s.plan(&ctx(&files)).unwrap();
        // 240 bytes, budget 100: drop /a (180 left), /b (120), /c (60): /young is never touched.
        let reason = "over max_total_bytes, oldest first";
        assert_eq!(
            plan.decisions(),
            vec![
                Decision::Delete(0, reason),
                Decision::Delete(1, reason),
                Decision::Delete(2, reason)
            ]
        );
    }

    #[test]
    fn files_without_timestamps_are_left_alone() {
        let s = strategy(r#"{"max_age": "1s"}"#);
        let mut b = ResourceSet::builder();
        b.push(NewResource {
            name: "/unknown",
            ..Default::default()
        });
        let inv = Invocation {
            policy: "t".into(),
            now_ms: NOW,
            dry_run: false,
        };
        assert!(
            s.plan(&CleanupContext::new(inv, b.build()))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn registered_objects_are_released_by_age_or_lapsed_ttl() {
        let s = strategy(r#"{"max_age": "1d"}"#);
        let mut b = ResourceSet::builder();
        let used_10m_ago = Some(NOW - 10 * MIN);
        for (name, ttl) in [("lease/lapsed", "300000"), ("lease/live", "3600000")] {
            b.push(NewResource {
                kind: Some(ResourceKind::AppObject),
                name,
                accessed_ms: used_10m_ago,
                labels: &[(TTL_LABEL, ttl)],
                ..Default::default()
            });
        }
        b.push(NewResource {
            kind: Some(ResourceKind::AppObject),
            name: "cache/ancient",
            accessed_ms: Some(NOW - 2 * 24 * 60 * MIN),
            ..Default::default()
        });
        let inv = Invocation {
            policy: "t".into(),
            now_ms: NOW,
            dry_run: false,
        };
        let plan = s.plan(&CleanupContext::new(inv, b.build())).unwrap();
        assert_eq!(
            plan.decisions(),
            vec![
                Decision::Release(0, "unused for longer than its TTL"),
                Decision::Release(2, "older than max_age"),
            ]
        );
    }

    #[test]
    fn include_globs_narrow_the_candidates() {
        let s = strategy(r#"{"max_age": "1h", "include": ["*.tmp", "/t/cache/**"]}"#);
        let old = 2 * 60 * MIN;
        let plan = s
            .plan(&ctx(&[
                ("/t/a.tmp", old, 1),
                ("/t/a.log", old, 1),
                ("/t/cache/x/y.bin", old, 1),
                ("/t/sub/b.tmp", old, 1),
            ]))
            .unwrap();
        let reason = "older than max_age";
        assert_eq!(
            plan.decisions(),
            vec![
                Decision::Delete(0, reason),
                Decision::Delete(2, reason),
                Decision::Delete(3, reason)
            ]
        );
        let e = TempFiles::new(
            serde_json::from_str(r#"{"max_age": "1h", "include": ["a["]}"#).unwrap(),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("include[0]"), "{e}");
    }

    #[test]
    fn bad_config_is_refused_with_the_field_named() {
        let e = serde_json::from_str::<Config>(r#"{"max_age": "1h", "max_agee": 3}"#).unwrap_err();
        assert!(e.to_string().contains("max_agee"), "{e}");
        let e = TempFiles::new(serde_json::from_str(r#"{"max_age": "1h", "age_by": []}"#).unwrap())
            .err()
            .unwrap();
        assert!(e.to_string().contains("age_by"));
    }
}
