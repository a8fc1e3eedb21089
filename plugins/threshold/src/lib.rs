//! `threshold`: the alert rule shipped with Warden. Each rule reduces a
//! window of a metric to a value — per series, per group of series, or as
//! the ratio of two metrics — and compares it with a threshold, so one rule
//! alerts per disk, per service, per cluster. Many rules share one policy
//! and one call.
//!
//! ```yaml
//! config:
//!   rules:
//!     - alert: HighMemory
//!       metric: memory_used_ratio
//!       matchers: { host: web-1 }   # optional
//!       condition: gt               # gt, lt, ge, le, eq, ne
//!       threshold: 0.9
//!       clear_threshold: 0.8        # optional hysteresis
//!       for: 5m                     # optional; the policy's `for` otherwise
//!       over: latest                # latest (default), avg, min, max, sum, count,
//!       window: 5m                  #   rate, increase, quantile (with `quantile: 0.99`)
//!       severity: critical          # info, warning (default), critical
//!       summary: "memory above 90%"
//!     - alert: ErrorRate            # errors per request, per service, over 5m
//!       metric: errors_total
//!       over: rate                  # counters: resets are handled
//!       by: [service]               # group, then `aggregate` (sum, max, min, avg, count)
//!       divide_by: { metric: requests_total }   # same `over` and grouping
//!       condition: gt
//!       threshold: 0.05
//!     - alert: SlowRequests
//!       metric: request_duration_ms
//!       over: quantile
//!       quantile: 0.99
//!       condition: gt
//!       threshold: 250
//!     - alert: HeartbeatLost        # a series that stopped reporting
//!       metric: heartbeat
//!       absent: 2m                  # no sample for 2m, seen within `window`
//!       window: 1h
//! ```

mod expr;
mod rule;

use std::collections::BTreeMap;

use warden_sdk::Invocation;
use warden_sdk::alert::{Alert, AlertRule};
use warden_sdk::config::HumanDuration;
use warden_sdk::series::{Reduce, Reduced, Series};

pub use expr::Valued;
pub use rule::{Aggregate, Config, Denominator, Level, Op, Over, Rule};
pub use warden_sdk::series::quantile_of;

/// The rule set, and how its rules share queries.
pub struct Threshold {
    config: Config,
    /// Per rule, the batch whose one query answers it, if any.
    batch_of: Vec<Option<usize>>,
    batches: Vec<Batch>,
    /// Per rule not in a batch, its query and its `divide_by`'s, as indexes
    /// into `queries`.
    query_of: Vec<Option<(usize, Option<usize>)>>,
    /// The distinct queries of the rules not in a batch.
    queries: Vec<Query>,
}

/// A query several rules may ask the same way: operators write a warning
/// and a critical rule, or a rule per threshold, over one expression, and
/// each identical query is fetched once per evaluation.
struct Query {
    metric: String,
    matchers: Vec<(String, String)>,
    window: HumanDuration,
    /// What the host computes from the window (`query-reduced`): every rule
    /// but an `absent` one needs one value per series or group, not the
    /// samples. `None`: the samples (`query-series`).
    how: Option<How>,
    /// How many rule queries it answers (a rule and its `divide_by` count
    /// apart).
    uses: usize,
}

/// A [`Reduce`] the plan owns; compared whole, so two rules share a query
/// only if they compute the same.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct How {
    over: Over,
    /// The quantile's bits: a rule's quantile is a number it was given,
    /// compared as written.
    quantile: Option<u64>,
    by: Option<Vec<String>>,
    aggregate: Aggregate,
}

impl How {
    fn reduce(&self) -> Reduce<'_> {
        expr::how(
            self.over,
            self.quantile.map(f64::from_bits),
            self.by.as_deref(),
            self.aggregate,
        )
    }
}

/// What a query returned.
enum Answer {
    Series(Vec<Series>),
    Values(Vec<Reduced>),
}

impl Answer {
    fn values(&self) -> &[Reduced] {
        match self {
            Answer::Values(v) => v,
            Answer::Series(_) => &[],
        }
    }
}

/// What `rule` computes from its metric's window and from its
/// `divide_by`'s: the same grouping, the denominator's own `over` and
/// `quantile` if it has them.
fn hows(rule: &Rule) -> (How, How) {
    let how = |over: Over, quantile: Option<f64>| How {
        over,
        quantile: quantile.map(f64::to_bits),
        by: rule.by.clone(),
        aggregate: rule.aggregate.unwrap_or_default(),
    };
    let numerator = how(rule.over, rule.quantile);
    let denominator = match &rule.divide_by {
        Some(d) => how(d.over.unwrap_or(rule.over), d.quantile.or(rule.quantile)),
        None => numerator.clone(),
    };
    (numerator, denominator)
}

/// From this many rules on the same metric and window, one query serves them
/// all and each rule's matchers are applied here. The host answers a query by
/// scanning every series of the metric, so a query per rule costs rules ×
/// series (10,000 rules over 10,000 series: most of a second); below this,
/// a query per rule only moves the series each rule asks for.
const BATCH_FROM: usize = 16;

/// Rules answered by one query.
struct Batch {
    metric: String,
    window: HumanDuration,
    /// What each of its rules computes per series.
    over: Over,
    quantile: Option<f64>,
    /// Matchers every rule of the batch has: the host filters by these.
    common: Vec<(String, String)>,
    /// Label keys the rules match on beyond `common`: the ones to index.
    keys: Vec<String>,
    /// How many rules it answers.
    rules: usize,
}

impl Threshold {
    /// Returns the alerts a per-series `rule` raises over `series`.
    pub fn check(rule: &Rule, series: &[Series]) -> Vec<Alert> {
        series.iter().filter_map(|s| check_one(rule, s)).collect()
    }

    /// Returns the alerts any `rule` raises at `now_ms` over its series and,
    /// for a ratio, the denominator's: the pure heart of the plugin, shared
    /// by the export and the tests.
    pub fn check_at(
        rule: &Rule,
        series: &[Series],
        denominators: &[Series],
        now_ms: i64,
    ) -> Result<Vec<Alert>, String> {
        if let Some(a) = rule.absent {
            let values = expr::absent(rule, a.as_millis(), series, now_ms);
            return Ok(values.iter().filter_map(|v| expr::alert(rule, v)).collect());
        }
        let (numerator, denominator) = hows(rule);
        let values = warden_sdk::series::reduce_series(series, &numerator.reduce());
        let den = rule
            .divide_by
            .as_ref()
            .map(|_| warden_sdk::series::reduce_series(denominators, &denominator.reduce()));
        Threshold::alerts_of(rule, &values, den.as_deref())
    }

    /// Returns the alerts `rule` raises over its values as computed (by the
    /// host, or by [`check_at`](Self::check_at)) and, for a ratio, its
    /// denominator's.
    fn alerts_of(
        rule: &Rule,
        values: &[Reduced],
        denominators: Option<&[Reduced]>,
    ) -> Result<Vec<Alert>, String> {
        let mut values = expr::valued(values);
        if let Some(d) = denominators {
            values = expr::ratio(values, &expr::valued(d), rule.on.as_deref())?;
        }
        Ok(values.iter().filter_map(|v| expr::alert(rule, v)).collect())
    }

    /// Groups rules by metric and window (as the host sees the window: whole
    /// milliseconds), and makes a batch of every group large enough.
    fn plan(config: Config) -> Self {
        // A BTreeMap: a HashMap would seed itself from WASI's randomness,
        // which an evaluation otherwise never sets up.
        // Rules in one batch compute the same per series: the host reduces
        // each series once for all of them.
        type Group<'a> = (&'a str, u64, Over, Option<u64>);
        let mut groups: BTreeMap<Group<'_>, Vec<usize>> = BTreeMap::new();
        for (i, r) in config
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.per_series())
        {
            let quantile = r.quantile.map(f64::to_bits);
            groups
                .entry((r.metric.as_str(), r.window.as_millis(), r.over, quantile))
                .or_default()
                .push(i);
        }
        let mut batch_of = vec![None; config.rules.len()];
        let mut batches = Vec::new();
        // Rule order, so batches are numbered as they are first met.
        let mut firsts: Vec<&Vec<usize>> =
            groups.values().filter(|g| g.len() >= BATCH_FROM).collect();
        firsts.sort_by_key(|g| g[0]);
        for group in firsts {
            let rules: Vec<&Rule> = group.iter().map(|i| &config.rules[*i]).collect();
            let common: Vec<(String, String)> = rules[0]
                .matchers
                .iter()
                .filter(|(k, v)| rules.iter().all(|r| r.matchers.get(*k) == Some(*v)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut keys: Vec<String> = rules
                .iter()
                .flat_map(|r| r.matchers.iter())
                .filter(|(k, _)| !common.iter().any(|(c, _)| c == *k))
                .map(|(k, _)| k.clone())
                .collect();
            keys.sort_unstable();
            keys.dedup();
            for i in group {
                batch_of[*i] = Some(batches.len());
            }
            batches.push(Batch {
                metric: rules[0].metric.clone(),
                window: rules[0].window,
                over: rules[0].over,
                quantile: rules[0].quantile,
                common,
                keys,
                rules: group.len(),
            });
        }
        // Every other rule's queries, each distinct one once.
        let mut queries: Vec<Query> = Vec::new();
        type Key<'a> = (
            &'a str,
            &'a BTreeMap<String, String>,
            HumanDuration,
            Option<How>,
        );
        let mut seen: BTreeMap<Key<'_>, usize> = BTreeMap::new();
        let mut query_of = Vec::with_capacity(config.rules.len());
        for (r, b) in config.rules.iter().zip(&batch_of) {
            if b.is_some() {
                query_of.push(None);
                continue;
            }
            // An `absent` rule reads the samples' times; every other rule
            // one value per series or group, which the host computes.
            let (numerator, denominator) = hows(r);
            let reduced = r.absent.is_none();
            let wanted = std::iter::once((r.metric.as_str(), &r.matchers, numerator)).chain(
                r.divide_by
                    .as_ref()
                    .map(|d| (d.metric.as_str(), &d.matchers, denominator)),
            );
            let mut ids = wanted.map(|(metric, matchers, how)| {
                let how = reduced.then_some(how);
                let key = (metric, matchers, r.window, how.clone());
                let at = *seen.entry(key).or_insert_with(|| {
                    queries.push(Query {
                        metric: metric.to_owned(),
                        matchers: matchers
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        window: r.window,
                        how,
                        uses: 0,
                    });
                    queries.len() - 1
                });
                queries[at].uses += 1;
                at
            });
            query_of.push(ids.next().map(|q| (q, ids.next())));
        }
        Threshold {
            config,
            batch_of,
            batches,
            query_of,
            queries,
        }
    }

    /// The answer to query `q`, fetched at its first use this evaluation and
    /// dropped after its last.
    fn answer(
        &self,
        q: usize,
        answers: &mut [Option<std::rc::Rc<Answer>>],
        left: &mut [usize],
    ) -> warden_sdk::Result<std::rc::Rc<Answer>> {
        let series = match &answers[q] {
            Some(s) => std::rc::Rc::clone(s),
            None => {
                let query = &self.queries[q];
                let matchers = pairs(query.matchers.iter().map(|(k, v)| (k, v)));
                let (metric, window) = (&query.metric, query.window.0);
                let s = std::rc::Rc::new(match &query.how {
                    Some(how) => Answer::Values(warden_sdk::series::query_reduced(
                        metric,
                        &matchers,
                        window,
                        &how.reduce(),
                    )?),
                    None => Answer::Series(warden_sdk::series::query(metric, &matchers, window)?),
                });
                answers[q] = Some(std::rc::Rc::clone(&s));
                s
            }
        };
        left[q] -= 1;
        if left[q] == 0 {
            answers[q] = None;
        }
        Ok(series)
    }
}

/// Returns the alert a per-series `rule` raises over one series, if any.
fn check_one(rule: &Rule, s: &Series) -> Option<Alert> {
    let value = s.reduce(rule.over, rule.quantile)?;
    expr::alert(
        rule,
        &Valued {
            labels: std::borrow::Cow::Borrowed(&s.labels),
            value,
        },
    )
}

/// A batch's series, each reduced, indexed by the labels its rules match on.
struct Fetched {
    series: Vec<Reduced>,
    /// (hash of a label's key and value, index of a series carrying it),
    /// sorted: each label's series are one run, in the host's order.
    postings: Vec<(u64, u32)>,
}

impl Fetched {
    fn new(series: Vec<Reduced>, keys: &[String]) -> Self {
        let mut postings = Vec::with_capacity(series.len() * keys.len());
        for (i, s) in series.iter().enumerate() {
            for l in &s.labels {
                if keys.contains(&l.key) {
                    postings.push((label_hash(&l.key, &l.value), i as u32));
                }
            }
        }
        postings.sort_unstable();
        // A label repeated within one series must not visit it twice.
        postings.dedup();
        Fetched { series, postings }
    }

    /// Calls `f` with every series whose labels include all of `matchers`, in
    /// the host's order, as the host's own matching would have chosen them.
    fn matching(&self, matchers: &[(&str, &str)], mut f: impl FnMut(&Reduced)) {
        let has_all = |s: &Reduced| {
            matchers
                .iter()
                .all(|(k, v)| s.labels.iter().any(|l| l.key == *k && l.value == *v))
        };
        // The rarest matcher's run holds every match; the others, and a hash
        // collision, are checked on each of its series.
        let Some(run) = matchers
            .iter()
            .map(|(k, v)| self.run(label_hash(k, v)))
            .min_by_key(|r| r.len())
        else {
            self.series.iter().for_each(f);
            return;
        };
        for (_, i) in run {
            let s = &self.series[*i as usize];
            if has_all(s) {
                f(s);
            }
        }
    }

    fn run(&self, hash: u64) -> &[(u64, u32)] {
        let start = self.postings.partition_point(|p| p.0 < hash);
        let len = self.postings[start..].partition_point(|p| p.0 == hash);
        &self.postings[start..start + len]
    }
}

/// FNV-1a of `key`, a separator no UTF-8 text contains, and `value`.
fn label_hash(key: &str, value: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in key.bytes().chain([0xff]).chain(value.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl AlertRule for Threshold {
    type Config = Config;

    fn new(config: Config) -> warden_sdk::Result<Self> {
        use warden_sdk::Error;
        for (i, r) in config.rules.iter().enumerate() {
            if let Some((field, problem)) = r.problem() {
                let at = format!("rules[{i}].{field}");
                // An empty name is the problem itself; otherwise name the rule.
                return Err(if r.alert.is_empty() {
                    Error::at(at, problem)
                } else {
                    Error::at(at, format!("`{}`: {problem}", r.alert))
                });
            }
        }
        Ok(Threshold::plan(config))
    }

    fn evaluate(&self, invocation: &Invocation) -> warden_sdk::Result<Vec<Alert>> {
        let mut alerts = Vec::new();
        // A batch is queried when its first rule comes up (so a failing query
        // fails at the same rule as before) and freed after its last.
        let mut fetched: Vec<Option<Fetched>> = self.batches.iter().map(|_| None).collect();
        let mut left: Vec<usize> = self.batches.iter().map(|b| b.rules).collect();
        let mut answers: Vec<Option<std::rc::Rc<Answer>>> =
            self.queries.iter().map(|_| None).collect();
        let mut uses: Vec<usize> = self.queries.iter().map(|q| q.uses).collect();
        // The matchers a batched rule still needs checked, reused across rules.
        let mut rest: Vec<(&str, &str)> = Vec::new();
        for ((rule, batch), query) in self
            .config
            .rules
            .iter()
            .zip(&self.batch_of)
            .zip(&self.query_of)
        {
            let Some(b) = *batch else {
                let Some((q, dq)) = query else {
                    continue;
                };
                let answer = self.answer(*q, &mut answers, &mut uses)?;
                let denominators = match dq {
                    Some(d) => Some(self.answer(*d, &mut answers, &mut uses)?),
                    None => None,
                };
                let found = match &*answer {
                    Answer::Series(series) => {
                        Threshold::check_at(rule, series, &[], invocation.now_ms)
                    }
                    Answer::Values(values) => Threshold::alerts_of(
                        rule,
                        values,
                        denominators.as_deref().map(Answer::values),
                    ),
                }
                .map_err(|e| format!("rule `{}`: {e}", rule.alert))?;
                alerts.extend(found);
                continue;
            };
            let batch = &self.batches[b];
            if fetched[b].is_none() {
                let common = pairs(batch.common.iter().map(|(k, v)| (k, v)));
                let how = expr::how(batch.over, batch.quantile, None, Aggregate::Sum);
                let values = warden_sdk::series::query_reduced(
                    &batch.metric,
                    &common,
                    batch.window.0,
                    &how,
                )?;
                fetched[b] = Some(Fetched::new(values, &batch.keys));
            }
            rest.clear();
            rest.extend(
                rule.matchers
                    .iter()
                    .filter(|(k, _)| !batch.common.iter().any(|(c, _)| c == *k))
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
            if let Some(f) = &fetched[b] {
                f.matching(&rest, |r| {
                    let value = Valued {
                        labels: std::borrow::Cow::Borrowed(&r.labels),
                        value: r.value,
                    };
                    alerts.extend(expr::alert(rule, &value));
                });
            }
            left[b] -= 1;
            if left[b] == 0 {
                fetched[b] = None;
            }
        }
        Ok(alerts)
    }
}

fn pairs<'a>(labels: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<(&'a str, &'a str)> {
    labels.map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

warden_sdk::register_alert_rule!(Threshold);

#[cfg(test)]
mod tests;
