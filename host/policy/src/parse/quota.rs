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
    fail: &mut impl FnMut(&str, String),
) -> Option<warden_quotas::QuotaDef> {
    use crate::schema::{QuotaAction, QuotaMeasure, QuotaResource, QuotaUnit};
    use warden_quotas::{Action, Field, Limits, Matcher, Measure, Op, QuotaDef, Scope, Unit};
    let ok = std::cell::Cell::new(true);
    let mut fail = |field: &str, m: String| {
        ok.set(false);
        fail(field, m);
    };
    if matches!(
        q.resource,
        QuotaResource::DiskBytes | QuotaResource::MemoryBytes
    ) {
        fail(
            "quota.resource",
            format!(
                "`quota.resource`: `{}` is not measured for quotas yet (Warden counts registered resources: `temp-files`, `open-files`, `sockets`, `processes`, `threads`, `app-objects` or `registered`), so the quota is refused rather than reported enforced",
                if q.resource == QuotaResource::DiskBytes {
                    "disk-bytes"
                } else {
                    "memory-bytes"
                }
            ),
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
        QuotaMeasure::Level => Measure::Level(unit),
        QuotaMeasure::Rate => Measure::Rate(unit),
    };
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
    Some(def)
}
