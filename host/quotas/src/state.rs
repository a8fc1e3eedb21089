//! The state machine of one (quota, owner): where usage stands against the
//! limits, what each change of state sets off, and the open violation.
//!
//! Rules, applied by [`Tracker::step`] on each evaluation:
//! - entering a level needs usage strictly above its limit; leaving it needs
//!   usage below limit × (1 − hysteresis), so a value hovering at a limit
//!   neither flaps nor repeats its events;
//! - above `soft` the state is `soft-pending` until it has held for the
//!   grace period, then `soft` (one warning);
//! - above `hard` it is `burst` while usage is at most `burst` and the time
//!   spent in `burst` within the period is below the allowance, else `hard`
//!   (the actions run once, on entry); `hard` stays until usage clears, even
//!   when a new period restores the allowance, so the actions are not undone
//!   and redone within one episode;
//! - time in `burst` is counted between evaluations, so its resolution is
//!   the evaluation interval.

use serde::{Deserialize, Serialize};

use crate::TimestampMs;
use crate::limits::{Action, Limits};
use crate::window::Ring;

/// Where usage stands, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Within limits.
    Ok,
    /// Above soft, waiting out the grace period.
    SoftPending,
    /// Above soft past the grace period: warned.
    Soft,
    /// Above hard within the burst limit and allowance: warned.
    Burst,
    /// Above hard: the actions are in force.
    Hard,
}

impl State {
    /// Returns true if and only if this state is a violation (warned or worse).
    pub fn is_violation(self) -> bool {
        self >= State::Soft
    }
}

/// What a change of state sets off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// Usage crossed `limit` (soft past its grace, hard within the burst
    /// allowance, or hard with a `warn` action).
    Warn {
        /// The limit crossed.
        limit: u64,
    },
    /// Denial begins: what would go over is refused.
    DenyOn {
        /// The hard limit.
        limit: u64,
    },
    /// Denial ends.
    DenyOff,
    /// Run these cleanup policies to reclaim at least `min_reclaim`: the
    /// action's own minimum, or what brings usage below where the state
    /// clears, whichever is more.
    CleanupRequested {
        /// The cleanup policies.
        policies: Vec<String>,
        /// The least to reclaim, in the measure's unit.
        min_reclaim: u64,
    },
    /// Usage is back within limits; the violation is closed.
    Resolved,
}

/// The limits as the state machine uses them.
#[derive(Debug, Clone)]
pub(crate) struct Thresholds {
    pub(crate) soft: Option<u64>,
    pub(crate) hard: Option<u64>,
    pub(crate) burst: Option<u64>,
    soft_clear: f64,
    hard_clear: f64,
    grace_ms: i64,
    allowance_ms: u64,
}

impl Thresholds {
    pub(crate) fn new(l: &Limits) -> Thresholds {
        let keep = 1.0 - l.hysteresis;
        Thresholds {
            soft: l.soft,
            hard: l.hard,
            burst: l.burst,
            soft_clear: l.soft.map_or(0.0, |s| s as f64 * keep),
            hard_clear: l.hard.map_or(0.0, |h| h as f64 * keep),
            grace_ms: l
                .grace_ms
                .map_or(0, |g| i64::try_from(g).unwrap_or(i64::MAX)),
            allowance_ms: l.burst_allowance_ms.unwrap_or(0),
        }
    }

    /// Returns the limit checks hold usage to when the burst allowance is
    /// whole: `burst`, else `hard`, else none.
    pub(crate) fn first_ceiling(&self) -> u64 {
        self.burst.or(self.hard).unwrap_or(u64::MAX)
    }

    /// Returns the most usage that cannot leave `ok`: the lowest limit.
    pub(crate) fn quiet(&self) -> u64 {
        self.soft
            .into_iter()
            .chain(self.hard)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Returns the limit whose crossing put usage in `state`.
    pub(crate) fn limit_of(&self, state: State) -> u64 {
        let l = if state >= State::Burst {
            self.hard
        } else {
            self.soft
        };
        l.unwrap_or(u64::MAX)
    }
}

/// An open violation, as the tracker keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Open {
    pub(crate) worst: State,
    pub(crate) started_ms: TimestampMs,
    pub(crate) peak: u64,
}

/// The state of one (quota, owner) between evaluations.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tracker {
    pub(crate) state: State,
    pub(crate) since_ms: TimestampMs,
    pub(crate) soft_since: Option<TimestampMs>,
    pub(crate) last_eval: Option<TimestampMs>,
    /// Time spent in `burst`, by period bucket.
    pub(crate) burst_used: Ring,
    pub(crate) open: Option<Open>,
}

/// What one evaluation changed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    pub(crate) from: State,
    pub(crate) to: State,
    /// The violation this step closed.
    pub(crate) closed: Option<Open>,
}

impl Tracker {
    /// Returns a tracker in `ok`; `burst_span` is the period's bucket count
    /// when the quota has a burst allowance, else 0.
    pub(crate) fn new(burst_span: usize) -> Tracker {
        Tracker {
            state: State::Ok,
            since_ms: 0,
            soft_since: None,
            last_eval: None,
            burst_used: Ring::new(burst_span),
            open: None,
        }
    }

    /// Moves the state on to `usage` at `now`; `key` is `now`'s bucket in the
    /// quota's period (any value without one).
    pub(crate) fn step(&mut self, usage: u64, now: TimestampMs, th: &Thresholds, key: i64) -> Step {
        let from = self.state;
        if from == State::Burst
            && let Some(last) = self.last_eval
        {
            self.burst_used
                .add(key, now.saturating_sub(last).max(0) as u64);
        }
        self.last_eval = Some(now);
        let to = self.next_state(usage, now, th, key);
        if to != from {
            self.state = to;
            self.since_ms = now;
        }
        let mut closed = None;
        if to.is_violation() {
            let open = self.open.get_or_insert(Open {
                worst: to,
                started_ms: now,
                peak: usage,
            });
            open.worst = open.worst.max(to);
            open.peak = open.peak.max(usage);
        } else {
            closed = self.open.take();
        }
        Step { from, to, closed }
    }

    fn next_state(&mut self, usage: u64, now: TimestampMs, th: &Thresholds, key: i64) -> State {
        let u = usage as f64;
        let held = self.state;
        let over_hard = th.hard.is_some_and(|h| {
            if held >= State::Burst {
                u >= th.hard_clear
            } else {
                usage > h
            }
        });
        let over_soft = th.soft.is_some_and(|s| {
            if held > State::Ok {
                u >= th.soft_clear
            } else {
                usage > s
            }
        });
        // The grace clock runs whenever usage is over soft, hard included,
        // so a fall from hard to soft does not wait out the grace again.
        if over_soft || (over_hard && th.soft.is_some()) {
            self.soft_since.get_or_insert(now);
        } else {
            self.soft_since = None;
        }
        if over_hard {
            let within_burst = held != State::Hard
                && th.burst.is_some_and(|b| usage <= b)
                && self.burst_used.sum(key) < th.allowance_ms;
            return if within_burst {
                State::Burst
            } else {
                State::Hard
            };
        }
        match self.soft_since {
            Some(t) if held >= State::Soft || now.saturating_sub(t) >= th.grace_ms => State::Soft,
            Some(_) => State::SoftPending,
            None => State::Ok,
        }
    }

    /// Returns the limit checks hold usage to now: `burst` while the
    /// allowance lasts and the state is not `hard`, else `hard`.
    pub(crate) fn ceiling(&self, th: &Thresholds, key: i64) -> u64 {
        let hard = th.hard.unwrap_or(u64::MAX);
        match th.burst {
            Some(b) if self.state != State::Hard && self.burst_used.sum(key) < th.allowance_ms => b,
            _ => hard,
        }
    }
}

/// Returns what going from `from` to `to` sets off, given the quota's
/// actions and the usage that caused it.
pub(crate) fn events(
    from: State,
    to: State,
    actions: &[Action],
    usage: u64,
    th: &Thresholds,
) -> Vec<EventKind> {
    let mut out = Vec::new();
    if from == to {
        return out;
    }
    let denies = actions.contains(&Action::Deny);
    if from == State::Hard && denies {
        out.push(EventKind::DenyOff);
    }
    match to {
        State::Ok | State::SoftPending if from.is_violation() => out.push(EventKind::Resolved),
        State::Soft if !from.is_violation() => out.push(EventKind::Warn {
            limit: th.limit_of(to),
        }),
        State::Burst if from < State::Burst => out.push(EventKind::Warn {
            limit: th.limit_of(to),
        }),
        State::Hard => {
            let limit = th.limit_of(to);
            for a in actions {
                out.push(match a {
                    Action::Warn => EventKind::Warn { limit },
                    Action::Deny => EventKind::DenyOn { limit },
                    Action::Cleanup {
                        policies,
                        min_reclaim,
                    } => EventKind::CleanupRequested {
                        policies: policies.clone(),
                        // Reclaim down to where the state clears, so the
                        // quota does not sit just under the hard limit.
                        min_reclaim: (*min_reclaim)
                            .max(usage.saturating_sub(th.hard_clear.floor() as u64)),
                    },
                });
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn th(l: &Limits) -> Thresholds {
        Thresholds::new(l)
    }

    fn limits(soft: Option<u64>, hard: Option<u64>) -> Limits {
        Limits {
            soft,
            hard,
            hysteresis: 0.1,
            ..Limits::default()
        }
    }

    /// Steps through `(time, usage)` pairs and returns the states.
    fn walk(t: &mut Tracker, th: &Thresholds, steps: &[(i64, u64)]) -> Vec<State> {
        steps
            .iter()
            .map(|&(now, u)| t.step(u, now, th, 0).to)
            .collect()
    }

    #[test]
    fn hysteresis_holds_a_state_until_usage_clears_below_the_band() {
        let th = th(&limits(None, Some(100)));
        let mut t = Tracker::new(0);
        // Crossing needs > 100; clearing needs < 90.
        let states = walk(
            &mut t,
            &th,
            &[(0, 100), (1, 101), (2, 95), (3, 90), (4, 89), (5, 99)],
        );
        use State::*;
        assert_eq!(states, vec![Ok, Hard, Hard, Hard, Ok, Ok]);
    }

    #[test]
    fn soft_warns_only_once_the_grace_period_has_held() {
        let mut l = limits(Some(50), Some(100));
        l.grace_ms = Some(1_000);
        let th = th(&l);
        let mut t = Tracker::new(0);
        use State::*;
        let states = walk(&mut t, &th, &[(0, 60), (999, 60), (1_000, 60)]);
        assert_eq!(states, vec![SoftPending, SoftPending, Soft]);
        // Dropping out during the grace period starts it again.
        let mut t = Tracker::new(0);
        let states = walk(
            &mut t,
            &th,
            &[(0, 60), (500, 40), (600, 60), (1_500, 60), (1_600, 60)],
        );
        assert_eq!(
            states,
            vec![SoftPending, Ok, SoftPending, SoftPending, Soft]
        );
    }

    #[test]
    fn burst_lasts_only_its_allowance_within_the_period() {
        let mut l = limits(None, Some(100));
        (l.burst, l.burst_allowance_ms) = (Some(150), Some(1_000));
        let th = th(&l);
        let mut t = Tracker::new(1);
        use State::*;
        // Above hard within burst: burst; time counted between evaluations.
        assert_eq!(t.step(120, 0, &th, 0).to, Burst);
        assert_eq!(t.ceiling(&th, 0), 150);
        assert_eq!(t.step(120, 600, &th, 0).to, Burst);
        assert_eq!(t.step(120, 1_000, &th, 0).to, Hard);
        assert_eq!(t.ceiling(&th, 0), 100);
        // A new period restores the allowance but does not lift `hard`.
        assert_eq!(t.step(120, 1_100, &th, 1).to, Hard);
        assert_eq!(t.step(10, 1_200, &th, 1).to, Ok);
        assert_eq!(t.ceiling(&th, 1), 150);
        assert_eq!(t.step(120, 1_300, &th, 1).to, Burst);
    }

    #[test]
    fn usage_above_the_burst_limit_is_hard_at_once() {
        let mut l = limits(None, Some(100));
        (l.burst, l.burst_allowance_ms) = (Some(150), Some(1_000));
        let mut t = Tracker::new(1);
        assert_eq!(t.step(151, 0, &th(&l), 0).to, State::Hard);
    }

    #[test]
    fn falling_from_hard_to_soft_keeps_the_violation_open() {
        let th = th(&limits(Some(50), Some(100)));
        let mut t = Tracker::new(0);
        t.step(120, 0, &th, 0);
        let s = t.step(70, 10, &th, 0);
        assert_eq!((s.from, s.to, s.closed), (State::Hard, State::Soft, None));
        let s = t.step(10, 20, &th, 0);
        let closed = s.closed.unwrap();
        assert_eq!(
            (closed.worst, closed.peak, closed.started_ms),
            (State::Hard, 120, 0)
        );
    }

    #[test]
    fn transitions_set_off_the_quota_actions() {
        let th = th(&limits(Some(50), Some(100)));
        let actions = vec![
            Action::Deny,
            Action::Cleanup {
                policies: vec!["tmp".into()],
                min_reclaim: 5,
            },
        ];
        use State::*;
        assert_eq!(
            events(Ok, Soft, &actions, 60, &th),
            vec![EventKind::Warn { limit: 50 }]
        );
        assert_eq!(
            events(Soft, Hard, &actions, 130, &th),
            vec![
                EventKind::DenyOn { limit: 100 },
                // Down to 90, where `hard` clears: 40 is more than 5.
                EventKind::CleanupRequested {
                    policies: vec!["tmp".into()],
                    min_reclaim: 40
                },
            ]
        );
        assert_eq!(
            events(Hard, Soft, &actions, 80, &th),
            vec![EventKind::DenyOff]
        );
        assert_eq!(events(Hard, Ok, &[], 0, &th), vec![EventKind::Resolved]);
        assert_eq!(events(SoftPending, Ok, &actions, 0, &th), vec![]);
        assert_eq!(
            events(Soft, Burst, &actions, 0, &th),
            vec![EventKind::Warn { limit: 100 }]
        );
    }
}
