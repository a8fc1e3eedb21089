//! The options of policies that raise something for people — alerts (alert
//! policies) and findings (detector policies): where it goes (`notify`,
//! `min_severity`), when (`for`, `keep_firing_for`, `cooldown`), and, for
//! findings, when one resolves (`resolve_after`) and how many a policy
//! keeps (`max_findings`). Each is checked here, and refused by name on a
//! policy kind it means nothing to.

use super::schema::{PolicyKind, PolicySpec};

/// Evaluations in a row without a finding that resolve it, unless the
/// policy says otherwise: one missed evaluation (a slow query, a series that
/// reported late) is not enough to call a finding gone.
pub const DEFAULT_RESOLVE_AFTER: u32 = 3;
/// The most findings one policy keeps unless it says otherwise: enough for
/// a detector watching a thousand series, small enough that the state file
/// and `/api/v1/findings` stay quick.
pub const DEFAULT_MAX_FINDINGS: usize = 1000;
/// The most findings one policy may keep at all.
pub const MAX_FINDINGS: u32 = 100_000;

/// Checks the options of `spec` that concern what it raises, reporting each
/// problem with the field it is in.
pub fn check(spec: &PolicySpec, fail: &mut impl FnMut(&str, String)) {
    let raises = matches!(spec.kind, PolicyKind::Alert | PolicyKind::Detector);
    let set = [
        ("for", spec.hold_for.is_some()),
        ("keep_firing_for", spec.keep_firing_for.is_some()),
        ("min_severity", spec.min_severity.is_some()),
        ("notify", spec.notify.is_some()),
    ];
    for (field, is_set) in set {
        // A quota's warnings go to receivers too.
        let quota_notify = field == "notify" && spec.kind == PolicyKind::Quota;
        if is_set && !raises && !quota_notify {
            fail(
                field,
                format!(
                    "`{field}` applies to alert and detector policies only; this one is of kind `{}`",
                    spec.kind.name()
                ),
            );
        }
    }
    let detector_only = [
        ("resolve_after", spec.resolve_after.is_some()),
        ("max_findings", spec.max_findings.is_some()),
    ];
    for (field, is_set) in detector_only {
        if is_set && spec.kind != PolicyKind::Detector {
            fail(
                field,
                format!("`{field}` applies to detector policies only"),
            );
        }
    }
    if let Some(n) = spec.resolve_after
        && !(1..=10_000).contains(&n)
    {
        fail(
            "resolve_after",
            format!("`resolve_after` is {n}; it must be between 1 and 10000 evaluations"),
        );
    }
    if let Some(n) = spec.max_findings
        && !(1..=MAX_FINDINGS).contains(&n)
    {
        fail(
            "max_findings",
            format!("`max_findings` is {n}; it must be between 1 and {MAX_FINDINGS}"),
        );
    }
    for (n, config) in spec.notify.iter().flatten().enumerate() {
        if let Err(e) = warden_notify::build(config) {
            let field = match &e {
                warden_notify::NotifyError::Config { field, .. } => {
                    format!("notify[{n}].{field}")
                }
                _ => format!("notify[{n}]"),
            };
            fail(&field, format!("`{field}`: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::parse::{ParseContext, parse};

    fn errors(text: &str) -> Vec<String> {
        let cx = ParseContext {
            data_dir: "/var/lib/warden".into(),
        };
        match parse(Path::new("p.yaml"), text, &cx) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn detectors_take_the_options_of_alerts_and_their_own() {
        let ok = "policies:
  - name: trend
    kind: detector
    plugin: linear-trend
    for: 2m
    keep_firing_for: 5m
    cooldown: 10m
    min_severity: warning
    resolve_after: 5
    max_findings: 200
    notify: [{type: log}]
    config: {metric: m, capacity: 1}
";
        assert!(errors(ok).is_empty(), "{:#?}", errors(ok));
    }

    #[test]
    fn options_on_the_wrong_kind_or_out_of_range_are_refused_where_written() {
        let text = "policies:
  - name: c
    kind: cleanup
    plugin: temp-files
    notify: [{type: log}]
    min_severity: critical
    resolve_after: 2
  - name: a
    kind: alert
    plugin: threshold
    max_findings: 10
  - name: d
    kind: detector
    plugin: linear-trend
    resolve_after: 0
    max_findings: 1000000
";
        let e = errors(text);
        let find = |s: &str| {
            e.iter()
                .find(|m| m.contains(s))
                .unwrap_or_else(|| panic!("no `{s}` in {e:#?}"))
        };
        assert!(find("`notify` applies to alert and detector").starts_with("p.yaml:5:"));
        assert!(find("`min_severity` applies").starts_with("p.yaml:6:"));
        assert!(find("`resolve_after` applies to detector").starts_with("p.yaml:7:"));
        assert!(find("`max_findings` applies to detector").starts_with("p.yaml:11:"));
        assert!(find("`resolve_after` is 0").starts_with("p.yaml:15:"));
        assert!(find("`max_findings` is 1000000").starts_with("p.yaml:16:"));
        assert_eq!(e.len(), 6, "{e:#?}");
    }
}
