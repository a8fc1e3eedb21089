//! Findings on `/metrics`:
//!
//! - `warden_findings_active{policy, pattern, severity}`: how many findings
//!   are active;
//! - `warden_finding_exhaustion_seconds{policy, pattern, subject, <labels>}`:
//!   for each active finding that predicts exhaustion, the seconds left
//!   (0 once the predicted time has passed).
//!
//! A finding's labels come from a plugin: a label whose name Prometheus
//! would refuse is left out, and one named like a label set here
//! (`policy`, `pattern`, `subject`) is exposed as `exported_<name>`, as
//! Prometheus does on a clash.

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::lifecycle::Phase;
use super::notify::severity_name;
use crate::StateStore;

/// Encodes the findings of a state store for a scrape.
#[derive(Debug)]
pub struct FindingsCollector(pub Arc<StateStore>);

/// Appends the findings to a scrape in Prometheus' text format (without
/// the closing `# EOF`).
pub fn encode(state: &Arc<StateStore>, out: &mut String) -> std::fmt::Result {
    let mut r = prometheus_client::registry::Registry::default();
    r.register_collector(Box::new(FindingsCollector(Arc::clone(state))));
    prometheus_client::encoding::text::encode_registry(out, &r)
}

/// Returns true if and only if Prometheus accepts `name` as a label name.
fn valid_label(name: &str) -> bool {
    let mut b = name.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !name.starts_with("__")
}

impl Collector for FindingsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = warden_core::clock::now_ms();
        let mut active: BTreeMap<(String, String, &'static str), u64> = BTreeMap::new();
        let mut exhaustion: Vec<(Vec<(String, String)>, f64)> = Vec::new();
        self.0.findings().for_each(|policy, f| {
            if f.phase != Phase::Active {
                return;
            }
            *active
                .entry((
                    policy.to_owned(),
                    f.pattern.clone(),
                    severity_name(f.severity),
                ))
                .or_default() += 1;
            if let Some(at) = f.exhaustion_at_ms {
                let mut labels = vec![
                    ("policy".to_owned(), policy.to_owned()),
                    ("pattern".to_owned(), f.pattern.clone()),
                    ("subject".to_owned(), f.subject.clone()),
                ];
                for (k, v) in &f.labels {
                    let k = if matches!(k.as_str(), "policy" | "pattern" | "subject") {
                        format!("exported_{k}")
                    } else {
                        k.clone()
                    };
                    if valid_label(&k) && !labels.iter().any(|(have, _)| *have == k) {
                        labels.push((k, v.clone()));
                    }
                }
                exhaustion.push((labels, ((at - now).max(0)) as f64 / 1000.0));
            }
        });
        {
            let mut family = encoder.encode_descriptor(
                "warden_findings_active",
                "Active findings of detector policies",
                None,
                MetricType::Gauge,
            )?;
            for ((policy, pattern, severity), n) in &active {
                let labels = [
                    ("policy", policy.as_str()),
                    ("pattern", pattern.as_str()),
                    ("severity", *severity),
                ];
                family.encode_family(&labels)?.encode_gauge(&(*n as i64))?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "warden_finding_exhaustion_seconds",
            "Seconds until an active finding predicts its subject is exhausted",
            None,
            MetricType::Gauge,
        )?;
        for (labels, secs) in &exhaustion {
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            family.encode_family(&labels)?.encode_gauge(secs)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::valid_label;

    #[test]
    fn only_names_prometheus_accepts_are_labels() {
        for ok in ["host", "_x", "disk_1"] {
            assert!(valid_label(ok), "{ok}");
        }
        for bad in ["", "1x", "a-b", "evidence:score", "__name__", "é"] {
            assert!(!valid_label(bad), "{bad}");
        }
    }
}
