//! The `quota:` block of a quota policy: limits, periods, scope and
//! actions checked field by field and made into what the engine enforces.

use super::*;

/// Converts a limit as written into the quota's unit, naming `field` when
/// it cannot be one.
fn quota_amount(
    a: &QuotaAmount,
    unit: warden_quotas::Unit,
    field: &str,
    fail: &mut impl FnMut(&str, String),
) -> Option<u64> {
    let bad = |what: String| format!("`{field}`: {what}");
    let n = match a {
        QuotaAmount::Int(n) if *n < 0 => {
            fail(field, bad(format!("a limit cannot be below zero, not {n}")));
            return None;
        }
        QuotaAmount::Int(n) => *n as u64,
        QuotaAmount::Float(f) if !f.is_finite() || *f < 0.0 => {
            fail(field, bad(format!("a limit cannot be below zero, not {f}")));
            return None;
        }
        QuotaAmount::Float(f) if f.fract() != 0.0 || *f > u64::MAX as f64 => {
            fail(field, bad(format!("a limit is a whole number, not {f}")));
            return None;
        }
        QuotaAmount::Float(f) => *f as u64,
        QuotaAmount::Text(t) if t.trim_start().starts_with('-') => {
            fail(
                field,
                bad(format!("a limit cannot be below zero, not `{t}`")),
            );
            return None;
        }
        QuotaAmount::Text(t) => {
            if unit == warden_quotas::Unit::Count && t.trim().parse::<u64>().is_err() {
                fail(
                    field,
                    bad(format!(
                        "`{t}` is not a count; a quota of `unit: count` takes a whole number (sizes such as `10GiB` need `unit: bytes`)"
                    )),
                );
                return None;
            }
            match t.parse::<warden_core::values::ByteSize>() {
                Ok(b) => b.0,
                Err(e) => {
                    fail(field, bad(format!("`{t}` is not a size: {e}")));
                    return None;
                }
            }
        }
    };
    Some(n)
}

/// Parses a quota period: a duration (rolling) or a calendar name.
fn quota_period(text: &str) -> Result<warden_quotas::Period, String> {
    use warden_quotas::Period;
    Ok(match text.trim() {
        "hourly" => Period::Hourly,
        "daily" => Period::Daily,
        "weekly" => Period::Weekly,
        "monthly" => Period::Monthly,
        t => {
            let d: HumanDuration = t.parse().map_err(|e| {
                format!("`{t}` is neither a duration (`1h`, `30m`) nor `hourly`, `daily`, `weekly` or `monthly`: {e}")
            })?;
            if d.0.is_zero() {
                return Err("the quota period must be longer than 0".into());
            }
            Period::Rolling {
                length_ms: u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX),
            }
        }
    })
}

/// Checks a quota block and builds what the engine enforces, with every
/// problem located at its field (`quota.soft`).
pub(super) fn check_quota(
    name: &str,
    q: &QuotaSpec,
    cx: &ParseContext,
    fail: &mut impl FnMut(&str, String),
) -> Option<(warden_quotas::QuotaDef, Option<QuotaSource>)> {
    use crate::schema::{QuotaAction, QuotaMeasure, QuotaResource, QuotaUnit};
    use warden_quotas::{Action, Field, Limits, Matcher, Measure, Op, QuotaDef, Scope, Unit};
    let ok = std::cell::Cell::new(true);
    let mut fail = |field: &str, m: String| {
        ok.set(false);
        fail(field, m);
    };
    let observed = matches!(
        q.resource,
        QuotaResource::MemoryBytes | QuotaResource::Series | QuotaResource::DiskBytes
    );
    if q.resource == QuotaResource::DiskBytes && q.unit == Some(QuotaUnit::Count) {
        fail(
            "quota.unit",
            "`quota.unit`: `disk-bytes` measures bytes; to limit how many files there are, count registered `temp-files`".into(),
        );
    }
    let sized = matches!(
        q.resource,
        QuotaResource::DiskBytes | QuotaResource::MemoryBytes
    );
    let unit = match q.unit.unwrap_or(if sized {
        QuotaUnit::Bytes
    } else {
        QuotaUnit::Count
    }) {
        QuotaUnit::Count => Unit::Count,
        QuotaUnit::Bytes => Unit::Bytes,
    };
    let measure = match q.measure.unwrap_or(QuotaMeasure::Level) {
        _ if observed => Measure::Observed(unit),
        QuotaMeasure::Level => Measure::Level(unit),
        QuotaMeasure::Rate => Measure::Rate(unit),
    };
    let source = usage_source(q, observed, cx, &mut fail);
    let soft = q
        .soft
        .as_ref()
        .and_then(|a| quota_amount(a, unit, "quota.soft", &mut fail));
    let hard = q
        .hard
        .as_ref()
        .and_then(|a| quota_amount(a, unit, "quota.hard", &mut fail));
    let burst = q
        .burst
        .as_ref()
        .and_then(|a| quota_amount(a, unit, "quota.burst", &mut fail));
    let period = match q.period.as_deref().map(quota_period) {
        Some(Err(e)) => {
            fail("quota.period", format!("`quota.period`: {e}"));
            None
        }
        Some(Ok(p)) => Some(p),
        None => None,
    };
    let ms =
        |d: Option<HumanDuration>| d.map(|d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX));
    let mut matchers = Vec::new();
    if let Some(kind) = q.resource.kind() {
        matchers.push(Matcher {
            field: Field::Kind,
            op: Op::Equals(kind.name().to_owned()),
        });
    }
    if let Some(o) = &q.owner {
        matchers.push(Matcher {
            field: Field::Owner,
            op: Op::Equals(o.clone()),
        });
    }
    let scope = q.scope.clone().unwrap_or_default();
    // Matchers are compared on every registration: a bounded number.
    const MAX_MATCHERS: usize = 16;
    if scope.matchers.len() > MAX_MATCHERS {
        fail(
            "quota.scope.matchers",
            format!(
                "`quota.scope.matchers`: at most {MAX_MATCHERS} matchers, not {}",
                scope.matchers.len()
            ),
        );
    }
    for (i, m) in scope.matchers.iter().enumerate().take(MAX_MATCHERS) {
        let at = format!("quota.scope.matchers[{i}]");
        let field = match m.field.as_str() {
            "owner" => Field::Owner,
            "kind" => Field::Kind,
            f => match f.strip_prefix("labels.") {
                Some(k) if !k.is_empty() => Field::Label(k.to_owned()),
                _ => {
                    fail(
                        &format!("{at}.field"),
                        format!("`{at}.field`: `{f}` is not `owner`, `kind` or `labels.KEY`"),
                    );
                    continue;
                }
            },
        };
        let ops: Vec<Op> = [
            m.equals.clone().map(Op::Equals),
            m.one_of.clone().map(Op::OneOf),
            m.prefix.clone().map(Op::Prefix),
            m.exists.filter(|e| *e).map(|_| Op::Exists),
        ]
        .into_iter()
        .flatten()
        .collect();
        if ops.len() != 1 || m.exists == Some(false) {
            fail(
                &at,
                format!(
                    "`{at}`: give exactly one of `equals`, `one_of`, `prefix` or `exists: true`"
                ),
            );
            continue;
        }
        if let (Field::Kind, Op::Equals(k)) = (&field, &ops[0])
            && warden_core::records::ResourceKind::from_name(k).is_none()
        {
            fail(
                &format!("{at}.equals"),
                format!("`{at}.equals`: `{k}` is not a resource kind"),
            );
        }
        matchers.push(Matcher {
            field,
            op: ops.into_iter().next()?,
        });
    }
    let mut kinds: Vec<QuotaAction> = q.action.into_iter().collect();
    for a in &q.actions {
        if !kinds.contains(a) {
            kinds.push(*a);
        }
    }
    let mut actions = Vec::new();
    for a in &kinds {
        actions.push(match a {
            QuotaAction::Warn => Action::Warn,
            QuotaAction::Deny => Action::Deny,
            QuotaAction::Cleanup => {
                let Some(c) = &q.cleanup else {
                    fail(
                        "quota",
                        "`quota.cleanup`: the `cleanup` action needs `cleanup: {policies: [NAME], min_reclaim: N}`".into(),
                    );
                    continue;
                };
                let min = c
                    .min_reclaim
                    .as_ref()
                    .and_then(|m| quota_amount(m, unit, "quota.cleanup.min_reclaim", &mut fail))
                    .unwrap_or(0);
                Action::Cleanup {
                    policies: c.policies.clone(),
                    min_reclaim: min,
                }
            }
        });
    }
    if q.cleanup.is_some() && !kinds.contains(&QuotaAction::Cleanup) {
        fail(
            "quota.cleanup",
            "`quota.cleanup` is used only by the `cleanup` action; add `action: cleanup` or remove it".into(),
        );
    }
    if let Some(c) = &q.cleanup {
        for (i, p) in c.policies.iter().enumerate() {
            if !valid_name(p) {
                fail(
                    &format!("quota.cleanup.policies[{i}]"),
                    format!("`quota.cleanup.policies[{i}]`: `{p}` is not a policy name"),
                );
            }
        }
    }
    if observed && kinds.contains(&QuotaAction::Deny) {
        let at = if q.action == Some(QuotaAction::Deny) {
            "quota.action"
        } else {
            "quota.actions"
        };
        let what = if q.resource == QuotaResource::DiskBytes {
            "a disk quota measures the files under its paths"
        } else {
            "a quota over series measures what the series report"
        };
        fail(
            at,
            format!(
                "`{at}`: `deny` refuses registrations, and {what}, which no registration adds to; use `warn` or `cleanup`"
            ),
        );
    }
    let def = QuotaDef {
        name: name.to_owned(),
        scope: Scope {
            matchers,
            per_owner: scope.per_owner,
        },
        measure,
        limits: Limits {
            soft,
            hard,
            burst,
            grace_ms: ms(q.grace),
            burst_allowance_ms: ms(q.burst_allowance),
            hysteresis: q.hysteresis.unwrap_or(warden_quotas::DEFAULT_HYSTERESIS),
        },
        period,
        actions,
    };
    if !ok.get() {
        return None;
    }
    // The engine's own rules, reported at the YAML field they concern.
    if let Err(e) = def.validate() {
        let field = e.field().unwrap_or("");
        let yaml = match field {
            "limits" => "quota".to_owned(),
            f if f.starts_with("limits.") => {
                let f = &f["limits.".len()..];
                format!("quota.{}", f.trim_end_matches("_ms"))
            }
            f if f.starts_with("scope.") || f == "period" => format!("quota.{f}"),
            f if f.starts_with("actions") => "quota.actions".into(),
            _ => "quota".into(),
        };
        let reason = match &e {
            warden_quotas::Error::Invalid { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        fail(&yaml, format!("`{yaml}`: {reason}"));
        return None;
    }
    Some((def, source))
}

/// Where a quota over series reads its usage (`memory-bytes`, `series`):
/// checked when the file is parsed, used at each evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSource {
    /// The metric name.
    pub metric: String,
    /// Labels the series must carry.
    pub labels: Vec<(String, String)>,
    /// The label naming the owner, for a quota per owner.
    pub owner_label: Option<String>,
    /// Samples older than this are not usage.
    pub max_age_ms: u64,
}

/// How old a sample may be when `max_age` is not given.
pub const DEFAULT_SERIES_MAX_AGE_MS: u64 = 5 * 60_000;

/// What `memory-bytes` reads: the collector's gauge per watched process.
pub const MEMORY_METRIC: &str = "process_resident_memory_bytes";

/// Where an observed quota's usage comes from, checked when the file is
/// parsed and read at each evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum QuotaSource {
    /// Stored series (`memory-bytes`, `series`).
    Series(SeriesSource),
    /// The space files take under paths (`disk-bytes`).
    Disk(DiskSource),
}

/// What a `disk-bytes` quota measures.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskSource {
    /// The paths, with `${data_dir}` expanded; owners are named by them.
    pub paths: Vec<PathBuf>,
    /// Entries looked at per evaluation.
    pub budget: u64,
}

/// Entries a disk walk looks at per evaluation when `quota.disk.budget` is
/// not given: about 0.3 s of `statx` calls on a warm cache on a 2-core VM
/// (`cargo bench -p warden --bench disk_quota`).
pub const DEFAULT_DISK_BUDGET: u64 = 100_000;

/// The bounds of `quota.disk.budget`: below, a walk of a small tree spans
/// many evaluations; above, one evaluation could stall for many seconds.
const DISK_BUDGET: std::ops::RangeInclusive<u64> = 100..=10_000_000;

/// Paths one disk quota measures at most: each is a walk of its own.
const MAX_DISK_PATHS: usize = 64;

/// Checks `quota.series` and `quota.disk`, and what an observed quota
/// cannot take; returns the source of an observed quota.
fn usage_source(
    q: &QuotaSpec,
    observed: bool,
    cx: &ParseContext,
    fail: &mut impl FnMut(&str, String),
) -> Option<QuotaSource> {
    use crate::schema::{QuotaMeasure, QuotaResource};
    let disk = q.resource == QuotaResource::DiskBytes;
    if q.series.is_some()
        && !matches!(
            q.resource,
            QuotaResource::MemoryBytes | QuotaResource::Series
        )
    {
        fail(
            "quota.series",
            "`quota.series` belongs to `resource: series` and `resource: memory-bytes`".into(),
        );
    }
    if q.disk.is_some() && !disk {
        fail(
            "quota.disk",
            "`quota.disk` belongs to `resource: disk-bytes`".into(),
        );
    }
    if !observed {
        return None;
    }
    if q.measure == Some(QuotaMeasure::Rate) {
        let what = if disk {
            "a disk quota reads what the files under its paths take now (a level)"
        } else {
            "a quota over series reads their latest value (a level)"
        };
        fail(
            "quota.measure",
            format!("`quota.measure`: {what}; `rate` counts registrations"),
        );
    }
    let scope = q.scope.clone().unwrap_or_default();
    if !scope.matchers.is_empty() || q.owner.is_some() {
        let at = if q.owner.is_some() {
            "quota.owner"
        } else {
            "quota.scope.matchers"
        };
        let how = if disk {
            "a disk quota measures `quota.disk.paths` (each an owner with `scope.per_owner: true`)"
        } else {
            "a quota over series selects its series with `quota.series.labels`"
        };
        fail(
            at,
            format!("`{at}`: {how}; `owner` and `scope.matchers` select registrations"),
        );
    }
    if disk {
        disk_source(q, scope.per_owner, cx, fail).map(QuotaSource::Disk)
    } else {
        series_source(q, &scope, fail).map(QuotaSource::Series)
    }
}

/// Checks `quota.disk`: absolute paths (or under `${data_dir}`) without
/// `..`, none inside another unless each is its own owner, and a budget
/// within bounds.
fn disk_source(
    q: &QuotaSpec,
    per_owner: bool,
    cx: &ParseContext,
    fail: &mut impl FnMut(&str, String),
) -> Option<DiskSource> {
    let Some(d) = &q.disk else {
        fail(
            "quota",
            "`quota.disk`: `resource: disk-bytes` needs the paths to measure (`disk: {paths: [/var/tmp]}`)".into(),
        );
        return None;
    };
    if d.paths.is_empty() || d.paths.len() > MAX_DISK_PATHS {
        fail(
            "quota.disk.paths",
            format!(
                "`quota.disk.paths`: give 1 to {MAX_DISK_PATHS} paths, not {}",
                d.paths.len()
            ),
        );
    }
    let mut paths = Vec::new();
    // The index in `quota.disk.paths` of each path kept.
    let mut given_at = Vec::new();
    for (i, p) in d.paths.iter().enumerate().take(MAX_DISK_PATHS) {
        let at = format!("quota.disk.paths[{i}]");
        let expanded = match p.strip_prefix("${data_dir}") {
            Some(rest) => cx.data_dir.join(rest.trim_start_matches('/')),
            None => PathBuf::from(p),
        };
        if !expanded.is_absolute() {
            fail(
                &at,
                format!("`{at}`: `{p}` must be absolute or start with `${{data_dir}}`"),
            );
        } else if expanded
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            fail(&at, format!("`{at}`: `{p}` must not contain `..`"));
        } else if paths.contains(&expanded) {
            fail(&at, format!("`{at}`: `{p}` is given twice"));
        } else if let Some(j) = (!per_owner)
            .then(|| {
                paths
                    .iter()
                    .position(|o: &PathBuf| expanded.starts_with(o) || o.starts_with(&expanded))
            })
            .flatten()
        {
            // Summed, the files under both would count twice. (Per owner,
            // each path is its own owner and counts what is under it.)
            fail(
                &at,
                format!(
                    "`{at}`: `{p}` and `{}` (paths[{}]) lie one inside the other, so the sum would count the files under the inner one twice; list only the outer one, or set `scope.per_owner: true` to limit each path on its own",
                    d.paths[given_at[j]], given_at[j]
                ),
            );
        } else {
            given_at.push(i);
            paths.push(expanded);
        }
    }
    let budget = d.budget.unwrap_or(DEFAULT_DISK_BUDGET);
    if !DISK_BUDGET.contains(&budget) {
        fail(
            "quota.disk.budget",
            format!(
                "`quota.disk.budget`: entries per evaluation, from {} to {}, not {budget}",
                DISK_BUDGET.start(),
                DISK_BUDGET.end()
            ),
        );
    }
    Some(DiskSource { paths, budget })
}

/// Checks `quota.series` for `memory-bytes` and `series`; returns what
/// they read.
fn series_source(
    q: &QuotaSpec,
    scope: &crate::schema::QuotaScope,
    fail: &mut impl FnMut(&str, String),
) -> Option<SeriesSource> {
    use crate::schema::QuotaResource;
    let given = q.series.clone();
    let (metric, owner_label) = match q.resource {
        QuotaResource::MemoryBytes => {
            if given.as_ref().is_some_and(|s| s.metric.is_some()) {
                fail(
                    "quota.series.metric",
                    format!(
                        "`quota.series.metric`: `memory-bytes` reads `{MEMORY_METRIC}`; for another metric use `resource: series`"
                    ),
                );
            }
            let label = given
                .as_ref()
                .and_then(|s| s.owner_label.clone())
                .unwrap_or_else(|| "process".to_owned());
            (MEMORY_METRIC.to_owned(), Some(label))
        }
        _ => {
            let Some(metric) = given.as_ref().and_then(|s| s.metric.clone()) else {
                fail(
                    "quota.series",
                    "`quota.series.metric`: `resource: series` needs the metric to read (`series: {metric: NAME}`)".into(),
                );
                return None;
            };
            (metric, given.as_ref().and_then(|s| s.owner_label.clone()))
        }
    };
    let valid = |n: &str| {
        let mut c = n.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
    };
    if !valid(&metric) {
        fail(
            "quota.series.metric",
            format!(
                "`quota.series.metric`: `{metric}` is not a metric name (letters, digits, `_` and `:`, not starting with a digit)"
            ),
        );
    }
    let owner_label = match (scope.per_owner, owner_label) {
        (true, None) => {
            fail(
                "quota.series.owner_label",
                "`quota.series.owner_label`: `scope.per_owner: true` needs the label whose value is the owner".into(),
            );
            None
        }
        (true, l) => l,
        // memory-bytes names `process` itself; only a label given by hand
        // without `per_owner` says something that would be ignored.
        (false, Some(l)) if given.as_ref().is_some_and(|s| s.owner_label.is_some()) => {
            fail(
                "quota.series.owner_label",
                format!(
                    "`quota.series.owner_label`: `{l}` names owners only with `scope.per_owner: true`; without it every series counts together"
                ),
            );
            None
        }
        (false, _) => None,
    };
    let max_age_ms = match given.as_ref().and_then(|s| s.max_age) {
        Some(d) if d.0.is_zero() => {
            fail(
                "quota.series.max_age",
                "`quota.series.max_age` must be longer than 0s".into(),
            );
            DEFAULT_SERIES_MAX_AGE_MS
        }
        Some(d) => u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX),
        None => DEFAULT_SERIES_MAX_AGE_MS,
    };
    Some(SeriesSource {
        metric,
        labels: given
            .map(|s| s.labels.into_iter().collect())
            .unwrap_or_default(),
        owner_label,
        max_age_ms,
    })
}
