//! What a quota is — its scope, what it measures, its limits, period and
//! actions — and the rules a definition must follow to be accepted.

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::period::Period;
use crate::scope::Scope;

/// The hysteresis when none is given: a state clears once usage falls 5%
/// below the limit that set it, enough to stop a value jittering around a
/// limit from warning on every cycle.
pub const DEFAULT_HYSTERESIS: f64 = 0.05;

/// One quota.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaDef {
    /// Its name, unique among quotas; a denial names it.
    pub name: String,
    /// Whom it covers.
    #[serde(default)]
    pub scope: Scope,
    /// What is counted.
    pub measure: Measure,
    /// Its limits.
    pub limits: Limits,
    /// The window of a rate and of the burst allowance; required by both.
    #[serde(default)]
    pub period: Option<Period>,
    /// What happens when the hard limit is crossed (a soft limit only ever
    /// warns).
    #[serde(default)]
    pub actions: Vec<Action>,
}

/// The unit of an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    /// Things: resources, files, processes.
    Count,
    /// Bytes.
    Bytes,
}

/// How usage is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Measure {
    /// What is held now: charges add, releases subtract.
    Level(Unit),
    /// What was added over the period (registrations per hour, bytes
    /// written per day); releases do not give it back.
    Rate(Unit),
    /// A value the host measures and sets (disk use of a path, a stored
    /// series); charges and releases leave it alone, checks add to it.
    Observed(Unit),
}

impl Measure {
    /// Returns the unit amounts are taken in.
    pub fn unit(self) -> Unit {
        match self {
            Measure::Level(u) | Measure::Rate(u) | Measure::Observed(u) => u,
        }
    }
}

/// An amount charged, released or checked: a registration is one thing of
/// some bytes, and each quota takes the part in its unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amount {
    /// How many things.
    pub count: u64,
    /// How many bytes.
    pub bytes: u64,
}

impl Amount {
    /// Returns one thing of `bytes` bytes, as a registration is.
    pub fn one(bytes: u64) -> Amount {
        Amount { count: 1, bytes }
    }

    /// Returns `n` things of no size.
    pub fn count(n: u64) -> Amount {
        Amount { count: n, bytes: 0 }
    }

    /// Returns `n` bytes, no things.
    pub fn bytes(n: u64) -> Amount {
        Amount { count: 0, bytes: n }
    }

    /// Returns the part of the amount in `unit`.
    #[inline]
    pub fn of(self, unit: Unit) -> u64 {
        match unit {
            Unit::Count => self.count,
            Unit::Bytes => self.bytes,
        }
    }
}

/// A quota's limits, in its measure's unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Above this for `grace_ms`, warn.
    #[serde(default)]
    pub soft: Option<u64>,
    /// Above this, act at once (unless within the burst allowance).
    #[serde(default)]
    pub hard: Option<u64>,
    /// Usage may sit above `hard` up to this, for at most
    /// `burst_allowance_ms` within each period.
    #[serde(default)]
    pub burst: Option<u64>,
    /// How long usage must stay above `soft` before a warning (0 when
    /// absent).
    #[serde(default)]
    pub grace_ms: Option<u64>,
    /// The most time above `hard` within each period, with `burst`.
    #[serde(default)]
    pub burst_allowance_ms: Option<u64>,
    /// A state clears only once usage falls below limit × (1 − this).
    #[serde(default = "default_hysteresis")]
    pub hysteresis: f64,
}

fn default_hysteresis() -> f64 {
    DEFAULT_HYSTERESIS
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            soft: None,
            hard: None,
            burst: None,
            grace_ms: None,
            burst_allowance_ms: None,
            hysteresis: DEFAULT_HYSTERESIS,
        }
    }
}

/// What happens when usage crosses the hard limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Warn only.
    Warn,
    /// Refuse what would go over: checks and admissions answer deny.
    Deny,
    /// Run these cleanup policies, asking them to reclaim at least
    /// `min_reclaim` (more when usage is further over).
    Cleanup {
        /// The cleanup policies, by name.
        policies: Vec<String>,
        /// The least to reclaim, in the measure's unit.
        #[serde(default)]
        min_reclaim: u64,
    },
}

impl QuotaDef {
    /// Returns a definition with no scope, period or actions: a global
    /// counter with these limits.
    pub fn new(name: impl Into<String>, measure: Measure, limits: Limits) -> QuotaDef {
        QuotaDef {
            name: name.into(),
            scope: Scope::global(),
            measure,
            limits,
            period: None,
            actions: Vec::new(),
        }
    }

    /// Returns true if and only if crossing the hard limit denies.
    pub fn denies(&self) -> bool {
        self.actions.contains(&Action::Deny)
    }

    /// Checks every rule, returning the first broken one with the field it
    /// is about.
    pub fn validate(&self) -> Result<(), Error> {
        let fail = |field: &str, reason: String| Err(Error::invalid(&self.name, field, reason));
        if self.name.trim().is_empty() || self.name.chars().any(char::is_control) {
            return fail(
                "name",
                "a quota needs a name of printable characters".into(),
            );
        }
        for (i, m) in self.scope.matchers.iter().enumerate() {
            if let Some((part, why)) = m.problem() {
                return fail(&format!("scope.matchers[{i}].{part}"), why.into());
            }
        }
        if let Some(p) = self.period
            && let Some(why) = p.problem()
        {
            return fail("period", why);
        }
        if matches!(self.measure, Measure::Rate(_)) && self.period.is_none() {
            return fail(
                "period",
                "a rate is measured over a period; set `period`".into(),
            );
        }
        self.validate_limits()?;
        self.validate_actions()
    }

    fn validate_limits(&self) -> Result<(), Error> {
        let l = &self.limits;
        let fail = |field: &str, reason: String| Err(Error::invalid(&self.name, field, reason));
        if l.soft.is_none() && l.hard.is_none() {
            return fail("limits", "a quota needs a `soft` or a `hard` limit".into());
        }
        if let (Some(soft), Some(hard)) = (l.soft, l.hard)
            && soft > hard
        {
            return fail(
                "limits.soft",
                format!("the soft limit ({soft}) is above the hard limit ({hard})"),
            );
        }
        if l.grace_ms.is_some() && l.soft.is_none() {
            return fail(
                "limits.grace_ms",
                "a grace period delays the soft warning; set `soft` or drop it".into(),
            );
        }
        if !(0.0..1.0).contains(&l.hysteresis) {
            return fail(
                "limits.hysteresis",
                format!(
                    "must be a fraction from 0 to below 1 (0.05 clears 5% under the limit), not {}",
                    l.hysteresis
                ),
            );
        }
        match (l.burst, l.burst_allowance_ms) {
            (None, None) => Ok(()),
            (None, Some(_)) => fail(
                "limits.burst_allowance_ms",
                "a burst allowance needs a `burst` limit".into(),
            ),
            (Some(_), None) => fail(
                "limits.burst",
                "a burst limit needs `burst_allowance_ms`, the most time above `hard` per period"
                    .into(),
            ),
            (Some(burst), Some(allowance)) => self.validate_burst(burst, allowance),
        }
    }

    fn validate_burst(&self, burst: u64, allowance: u64) -> Result<(), Error> {
        let fail = |field: &str, reason: String| Err(Error::invalid(&self.name, field, reason));
        let Some(hard) = self.limits.hard else {
            return fail("limits.burst", "a burst limit needs a `hard` limit".into());
        };
        if burst < hard {
            return fail(
                "limits.burst",
                format!("the burst limit ({burst}) is below the hard limit ({hard})"),
            );
        }
        let Some(period) = self.period else {
            return fail(
                "period",
                "a burst allowance is spent within each period; set `period`".into(),
            );
        };
        if allowance == 0 || allowance > period.shortest_ms() {
            return fail(
                "limits.burst_allowance_ms",
                format!(
                    "must be above 0 and at most the period ({} ms), not {allowance}",
                    period.shortest_ms()
                ),
            );
        }
        Ok(())
    }

    fn validate_actions(&self) -> Result<(), Error> {
        if !self.actions.is_empty() && self.limits.hard.is_none() {
            return Err(Error::invalid(
                &self.name,
                "actions",
                "actions apply above the hard limit; set `limits.hard` (a soft limit only warns)",
            ));
        }
        for (i, a) in self.actions.iter().enumerate() {
            if let Action::Cleanup { policies, .. } = a
                && (policies.is_empty() || policies.iter().any(|p| p.trim().is_empty()))
            {
                return Err(Error::invalid(
                    &self.name,
                    format!("actions[{i}].policies"),
                    "a cleanup action names one or more cleanup policies",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::{Field, Matcher, Op};

    fn def() -> QuotaDef {
        let mut d = QuotaDef::new(
            "q",
            Measure::Level(Unit::Bytes),
            Limits {
                soft: Some(80),
                hard: Some(100),
                ..Limits::default()
            },
        );
        d.actions = vec![Action::Deny];
        d
    }

    fn field_of(d: &QuotaDef) -> String {
        d.validate().unwrap_err().field().unwrap().to_owned()
    }

    #[test]
    fn a_sound_definition_passes() {
        def().validate().unwrap();
        let mut d = def();
        d.limits.burst = Some(150);
        d.limits.burst_allowance_ms = Some(60_000);
        d.period = Some(Period::Hourly);
        d.validate().unwrap();
    }

    #[test]
    fn limits_in_the_wrong_order_are_refused() {
        let mut d = def();
        d.limits.soft = Some(101);
        assert_eq!(field_of(&d), "limits.soft");
        let mut d = def();
        (d.limits.burst, d.limits.burst_allowance_ms) = (Some(99), Some(1_000));
        d.period = Some(Period::Hourly);
        assert_eq!(field_of(&d), "limits.burst");
        assert!(
            d.validate()
                .unwrap_err()
                .to_string()
                .contains("(99) is below the hard limit (100)")
        );
    }

    #[test]
    fn missing_or_orphaned_settings_are_refused() {
        let mut d = def();
        (d.limits.soft, d.limits.hard, d.actions) = (None, None, vec![]);
        assert_eq!(field_of(&d), "limits");
        let mut d = def();
        (d.limits.soft, d.limits.grace_ms) = (None, Some(10));
        assert_eq!(field_of(&d), "limits.grace_ms");
        let mut d = def();
        d.limits.burst = Some(120);
        assert_eq!(field_of(&d), "limits.burst");
        d.limits.burst_allowance_ms = Some(1_000);
        assert_eq!(field_of(&d), "period");
        let mut d = def();
        d.limits.burst_allowance_ms = Some(1_000);
        assert_eq!(field_of(&d), "limits.burst_allowance_ms");
        let mut d = def();
        d.limits.hard = None;
        assert_eq!(field_of(&d), "actions");
        let mut d = def();
        d.measure = Measure::Rate(Unit::Count);
        assert_eq!(field_of(&d), "period");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for h in [f64::NAN, -0.1, 1.0] {
            let mut d = def();
            d.limits.hysteresis = h;
            assert_eq!(field_of(&d), "limits.hysteresis", "{h}");
        }
        let mut d = def();
        d.period = Some(Period::Rolling { length_ms: 0 });
        assert_eq!(field_of(&d), "period");
        let mut d = def();
        (d.limits.burst, d.limits.burst_allowance_ms) = (Some(120), Some(0));
        d.period = Some(Period::Hourly);
        assert_eq!(field_of(&d), "limits.burst_allowance_ms");
        d.limits.burst_allowance_ms = Some(3_600_001);
        assert_eq!(field_of(&d), "limits.burst_allowance_ms");
        let mut d = def();
        d.name = " ".into();
        assert_eq!(field_of(&d), "name");
    }

    #[test]
    fn bad_matchers_and_actions_name_their_index() {
        let mut d = def();
        d.scope.matchers = vec![
            Matcher {
                field: Field::Owner,
                op: Op::Equals("a".into()),
            },
            Matcher {
                field: Field::Kind,
                op: Op::Exists,
            },
        ];
        assert_eq!(field_of(&d), "scope.matchers[1].op");
        let mut d = def();
        d.actions.push(Action::Cleanup {
            policies: vec![],
            min_reclaim: 0,
        });
        assert_eq!(field_of(&d), "actions[1].policies");
    }

    #[test]
    fn definitions_read_from_json_with_defaults() {
        let d: QuotaDef = serde_json::from_str(
            r#"{"name":"uploads","measure":{"rate":"bytes"},"period":"daily",
                "limits":{"hard":1000},"actions":["deny",{"cleanup":{"policies":["tmp"]}}]}"#,
        )
        .unwrap();
        assert_eq!(d.limits.hysteresis, DEFAULT_HYSTERESIS);
        assert!(d.denies());
        d.validate().unwrap();
        let e = serde_json::from_str::<QuotaDef>(r#"{"name":"x","measure":"level","limits":{}}"#);
        assert!(e.is_err());
    }
}
