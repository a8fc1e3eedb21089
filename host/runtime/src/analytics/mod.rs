//! Analytics over what Warden holds: usage profiles ([`profiles`]), the
//! patterns detector policies found (growth, periodic spikes, leaks,
//! underutilization, anomalies: the active findings, by pattern), and the
//! recommendations that follow from both, most pressing first.

pub mod profiles;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::findings::{Filter, FindingStore, Listed, Phase};
use warden_policy::schema::Severity;

pub use profiles::{KindProfile, ProcessProfile, Profiles, UsageStats};

/// The active findings of one pattern.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pattern {
    /// The pattern, such as `linear-growth`.
    pub pattern: String,
    /// How many findings of it are active.
    pub count: usize,
    /// The most severe of them.
    pub severity: Severity,
    /// The findings, most severe first.
    pub findings: Vec<Listed>,
}

/// The patterns active findings show, most severe first, then most found.
pub fn patterns(findings: &FindingStore) -> Vec<Pattern> {
    let mut by: BTreeMap<String, Vec<Listed>> = BTreeMap::new();
    for f in findings.list(&Filter {
        phase: Some(Phase::Active),
        ..Filter::default()
    }) {
        by.entry(f.finding.pattern.clone()).or_default().push(f);
    }
    let mut out: Vec<Pattern> = by
        .into_iter()
        .map(|(pattern, mut findings)| {
            findings.sort_by(|a, b| {
                b.finding
                    .severity
                    .cmp(&a.finding.severity)
                    .then(b.finding.confidence.total_cmp(&a.finding.confidence))
            });
            Pattern {
                count: findings.len(),
                severity: findings
                    .iter()
                    .map(|f| f.finding.severity)
                    .max()
                    .unwrap_or(Severity::Info),
                pattern,
                findings,
            }
        })
        .collect();
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.count.cmp(&a.count)));
    out
}

/// Something a person could do, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// How pressing.
    pub severity: Severity,
    /// Where it comes from: `finding` (a detector policy's) or `profile`.
    pub source: &'static str,
    /// The detector policy, for a finding.
    pub policy: Option<String>,
    /// The pattern (`linear-growth`) or the profile's resource (`memory_bytes`).
    pub topic: String,
    /// The series, process or resource kind concerned.
    pub subject: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// What to do.
    pub text: String,
    /// The numbers behind it.
    pub evidence: BTreeMap<String, f64>,
}

/// A profile counts as worth acting on from this much waste, and a peak at
/// least this far above the mean: sizing for the 95th percentile instead of
/// the peak then saves most of it.
const WASTE_PCT: f64 = 60.0;
const PEAK_TO_AVG: f64 = 3.0;

/// Recommendations from active findings and from `profiles`, most severe
/// first, then most confident.
pub fn recommendations(findings: &FindingStore, profiles: &Profiles) -> Vec<Recommendation> {
    let mut out: Vec<(f64, Recommendation)> = findings
        .list(&Filter {
            phase: Some(Phase::Active),
            ..Filter::default()
        })
        .into_iter()
        .filter(|f| !f.finding.recommendation.is_empty())
        .map(|f| {
            (
                f.finding.confidence,
                Recommendation {
                    severity: f.finding.severity,
                    source: "finding",
                    policy: Some(f.policy),
                    topic: f.finding.pattern,
                    subject: f.finding.subject,
                    labels: f.finding.labels.into_iter().collect(),
                    text: f.finding.recommendation,
                    evidence: f.finding.evidence,
                },
            )
        })
        .collect();
    for p in &profiles.processes {
        for (resource, u) in &p.usage {
            if u.samples < 10 || u.waste_pct < WASTE_PCT || u.peak_to_avg < PEAK_TO_AVG {
                continue;
            }
            out.push((
                u.efficiency,
                Recommendation {
                    severity: Severity::Info,
                    source: "profile",
                    policy: None,
                    topic: (*resource).to_owned(),
                    subject: p.process.clone(),
                    labels: BTreeMap::from([("process".to_owned(), p.process.clone())]),
                    text: format!(
                        "`{}` uses {:.4} {resource} on average but peaks at {:.4} ({:.1}× the mean, p95 {:.4}): a provision sized for the peak is {:.0}% idle on average; size for the 95th percentile and absorb the peaks (queueing, smoothing the work that causes them)",
                        p.process, u.avg, u.peak, u.peak_to_avg, u.p95, u.waste_pct
                    ),
                    evidence: BTreeMap::from([
                        ("avg".to_owned(), u.avg),
                        ("p95".to_owned(), u.p95),
                        ("peak".to_owned(), u.peak),
                        ("waste_pct".to_owned(), u.waste_pct),
                    ]),
                },
            ));
        }
    }
    for k in &profiles.resource_kinds {
        if k.idle == 0 || k.waste_pct < WASTE_PCT {
            continue;
        }
        out.push((
            k.efficiency,
            Recommendation {
                severity: Severity::Info,
                source: "profile",
                policy: None,
                topic: "idle-resources".to_owned(),
                subject: k.kind.to_owned(),
                labels: BTreeMap::new(),
                text: format!(
                    "{} of {} registered {} resources ({} bytes, {:.0}% of theirs) have gone unused; give them a `ttl` and a cleanup policy with `scope.kinds: [{}]`",
                    k.idle, k.count, k.kind, k.idle_bytes, k.waste_pct, k.kind
                ),
                evidence: BTreeMap::from([
                    ("idle".to_owned(), k.idle as f64),
                    ("idle_bytes".to_owned(), k.idle_bytes as f64),
                    ("waste_pct".to_owned(), k.waste_pct),
                ]),
            },
        ));
    }
    out.sort_by(|a, b| b.1.severity.cmp(&a.1.severity).then(b.0.total_cmp(&a.0)));
    out.into_iter().map(|(_, r)| r).collect()
}
