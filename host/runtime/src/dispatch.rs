//! Getting notifications to receivers without holding up evaluations.
//!
//! Each distinct notifier configuration gets one worker thread fed by a
//! bounded queue: batches reach a receiver in the order they were decided (a
//! `resolved` never overtakes its `firing`), a slow or unreachable receiver
//! delays only itself, and its retries never block a policy's next cycle.
//! Workers are shared by every policy naming the same configuration and stop
//! once no policy uses them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::alerts::Due;
use warden_notify::{AlertStatus, Notification, Notifier, NotifierConfig, NotifyError};

/// Batches a worker holds before it refuses more (each is one policy's cycle).
const QUEUE: usize = 256;

/// Counters of what was delivered.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Batches delivered.
    pub delivered: AtomicU64,
    /// Batches given up on after their retries.
    pub failed: AtomicU64,
    /// Batches dropped because a receiver's queue was full.
    pub dropped: AtomicU64,
    /// Whether each of the latest [`RECENT`] batches got through, newest last.
    recent: Mutex<std::collections::VecDeque<bool>>,
}

/// How many of the latest batches [`DeliveryCounts::recent_delivered`] covers.
pub const RECENT: usize = 100;

impl DeliveryStats {
    fn note(&self, counter: &AtomicU64, delivered: bool) {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() == RECENT {
            r.pop_front();
        }
        r.push_back(delivered);
    }
}

/// A snapshot of [`DeliveryStats`].
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// Batches delivered.
    pub delivered: u64,
    /// Batches given up on after their retries.
    pub failed: u64,
    /// Batches dropped because a receiver's queue was full.
    pub dropped: u64,
    /// Of the latest batches (at most [`RECENT`]): how many got through, and
    /// how many there were. Health is judged by these, so an outage long
    /// past does not count against it for ever.
    pub recent_delivered: usize,
    /// See `recent_delivered`.
    pub recent: usize,
}

struct Worker {
    tx: SyncSender<(Vec<Notification>, i64)>,
    wants_refresh: bool,
    describe: String,
}

/// Sends notifications to the configured receivers.
pub struct Dispatcher {
    global: Vec<NotifierConfig>,
    workers: Mutex<HashMap<String, Arc<Worker>>>,
    stats: Arc<DeliveryStats>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("global", &self.global)
            .finish_non_exhaustive()
    }
}

impl Default for Dispatcher {
    /// Alerts go to the log only.
    fn default() -> Self {
        Dispatcher::new(vec![NotifierConfig::Log {}]).expect("the log notifier always builds")
    }
}

impl Dispatcher {
    /// A dispatcher whose policies without their own `notify:` use `global`.
    /// Every configuration is checked now, so a mistake stops the start.
    pub fn new(global: Vec<NotifierConfig>) -> Result<Self, NotifyError> {
        for c in &global {
            warden_notify::build(c)?;
        }
        Ok(Dispatcher {
            global,
            workers: Mutex::new(HashMap::new()),
            stats: Arc::default(),
        })
    }

    /// What was delivered so far.
    pub fn counts(&self) -> DeliveryCounts {
        let recent = self.stats.recent.lock().unwrap_or_else(|p| p.into_inner());
        DeliveryCounts {
            delivered: self.stats.delivered.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
            dropped: self.stats.dropped.load(Ordering::Relaxed),
            recent_delivered: recent.iter().filter(|d| **d).count(),
            recent: recent.len(),
        }
    }

    /// Hands `due` (one policy's cycle) to the policy's receivers: its own
    /// `notify` list if it has one, the global list otherwise.
    pub fn dispatch(
        &self,
        policy: &str,
        policy_labels: &BTreeMap<String, String>,
        own: Option<&[NotifierConfig]>,
        due: &[Due],
        now_ms: i64,
    ) {
        if due.is_empty() {
            return;
        }
        let all: Vec<(Notification, bool)> = due
            .iter()
            .map(|d| (notification(policy, policy_labels, d), d.refresh))
            .collect();
        self.send(policy, own, &all, now_ms);
    }

    /// Hands findings that are due (one detector policy's cycle) to the
    /// policy's receivers, as [`dispatch`](Self::dispatch) does alerts.
    pub fn dispatch_findings(
        &self,
        policy: &str,
        policy_labels: &BTreeMap<String, String>,
        own: Option<&[NotifierConfig]>,
        due: &[crate::findings::Due],
        now_ms: i64,
    ) {
        if due.is_empty() {
            return;
        }
        let all: Vec<(Notification, bool)> = due
            .iter()
            .map(|d| {
                (
                    crate::findings::notify::notification(policy, policy_labels, d),
                    d.refresh,
                )
            })
            .collect();
        self.send(policy, own, &all, now_ms);
    }

    /// Hands notifications made elsewhere (quota warnings), each with
    /// whether it is a refresh, to the policy's receivers.
    pub fn dispatch_notifications(
        &self,
        policy: &str,
        own: Option<&[NotifierConfig]>,
        all: &[(Notification, bool)],
        now_ms: i64,
    ) {
        self.send(policy, own, all, now_ms);
    }

    /// Queues `all` (notifications, each with whether it is a refresh) to
    /// each receiver: refreshes only to those that want them.
    fn send(
        &self,
        policy: &str,
        own: Option<&[NotifierConfig]>,
        all: &[(Notification, bool)],
        now_ms: i64,
    ) {
        for config in own.unwrap_or(&self.global) {
            let Some(worker) = self.worker(config) else {
                continue;
            };
            let batch: Vec<Notification> = all
                .iter()
                .filter(|(_, refresh)| worker.wants_refresh || !refresh)
                .map(|(n, _)| n.clone())
                .collect();
            if batch.is_empty() {
                continue;
            }
            match worker.tx.try_send((batch, now_ms)) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.stats.note(&self.stats.dropped, false);
                    tracing::error!(policy, receiver = %worker.describe, "the receiver is not keeping up; a batch of alerts was dropped");
                }
            }
        }
    }

    /// The worker for `config`, started on first use.
    fn worker(&self, config: &NotifierConfig) -> Option<Arc<Worker>> {
        let key = serde_json::to_string(config).unwrap_or_default();
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = workers.get(&key) {
            return Some(Arc::clone(w));
        }
        // Checked when the policy or the daemon config was loaded.
        let notifier: Box<dyn Notifier> = match warden_notify::build(config) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "cannot build a notifier");
                return None;
            }
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<Notification>, i64)>(QUEUE);
        let worker = Arc::new(Worker {
            tx,
            wants_refresh: notifier.wants_refresh(),
            describe: notifier.describe(),
        });
        let stats = Arc::clone(&self.stats);
        let spawned = std::thread::Builder::new()
            .name("warden-notify".into())
            .spawn(move || {
                for (batch, now_ms) in rx {
                    let _span = tracing::info_span!("notify", receiver = %notifier.describe(), alerts = batch.len()).entered();
                    match notifier.send(&batch, now_ms) {
                        Ok(()) => stats.note(&stats.delivered, true),
                        Err(e) => {
                            tracing::error!(error = %e, "alerts not delivered");
                            stats.note(&stats.failed, false);
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a notifier thread");
            return None;
        }
        workers.insert(key, Arc::clone(&worker));
        Some(worker)
    }

    /// Stops the workers of configurations no longer in `in_use` (nor global).
    pub fn retain(&self, in_use: &[&NotifierConfig]) {
        let keep: Vec<String> = in_use
            .iter()
            .copied()
            .chain(&self.global)
            .map(|c| serde_json::to_string(c).unwrap_or_default())
            .collect();
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keep.contains(k));
    }
}

/// The notification for one alert: its labels are `alertname`, the policy's
/// labels, the rule's labels and `severity`, later ones winning.
pub(crate) fn notification(
    policy: &str,
    policy_labels: &BTreeMap<String, String>,
    d: &Due,
) -> Notification {
    let a = &d.alert;
    let mut labels = policy_labels.clone();
    labels.extend(a.labels.iter().cloned());
    labels.insert("alertname".into(), a.name.clone());
    if !a.severity.is_empty() {
        labels.insert("severity".into(), a.severity.clone());
    }
    let mut annotations: BTreeMap<String, String> = a.annotations.iter().cloned().collect();
    annotations
        .entry("value".into())
        .or_insert_with(|| a.value.to_string());
    Notification {
        status: if d.resolved {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        },
        labels,
        annotations,
        starts_at_ms: a.fired_at_ms.unwrap_or(a.active_since_ms),
        ends_at_ms: if d.resolved { a.resolved_at_ms } else { None },
        policy: policy.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{AlertState, Phase};

    fn due(resolved: bool, refresh: bool) -> Due {
        Due {
            alert: AlertState {
                name: "Hot".into(),
                labels: vec![("host".into(), "a".into())],
                phase: if resolved {
                    Phase::Resolved
                } else {
                    Phase::Firing
                },
                active_since_ms: 1,
                fired_at_ms: Some(2),
                last_seen_ms: 3,
                resolved_at_ms: resolved.then_some(4),
                value: 9.5,
                severity: "critical".into(),
                annotations: vec![("summary".into(), "hot".into())],
                told_firing: true,
                last_notified_ms: None,
            },
            resolved,
            refresh,
        }
    }

    fn wait_for(d: &Dispatcher, done: impl Fn(DeliveryCounts) -> bool) -> DeliveryCounts {
        let t = std::time::Instant::now();
        loop {
            let c = d.counts();
            if done(c) {
                return c;
            }
            assert!(t.elapsed().as_secs() < 10, "{c:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn labels_carry_policy_rule_and_severity_and_ends_only_when_resolved() {
        let policy_labels = BTreeMap::from([("team".to_owned(), "ops".to_owned())]);
        let n = notification("p", &policy_labels, &due(true, false));
        assert_eq!(n.status, AlertStatus::Resolved);
        assert_eq!(
            n.labels.keys().map(String::as_str).collect::<Vec<_>>(),
            ["alertname", "host", "severity", "team"]
        );
        assert_eq!((n.starts_at_ms, n.ends_at_ms), (2, Some(4)));
        assert_eq!(n.annotations["value"], "9.5");
        let n = notification("p", &policy_labels, &due(false, false));
        assert_eq!((n.status, n.ends_at_ms), (AlertStatus::Firing, None));
    }

    #[test]
    fn failures_count_and_only_recent_batches_judge_health() {
        // Nothing listens on port 1; no retries, so each batch fails fast.
        let hook: NotifierConfig = serde_norway::from_str(
            "type: webhook\nurl: http://127.0.0.1:1/hook\nretries: 0\ntimeout: 200ms\n",
        )
        .unwrap();
        let d = Dispatcher::new(vec![hook, NotifierConfig::Log {}]).unwrap();
        d.dispatch("p", &BTreeMap::new(), None, &[due(false, false)], 0);
        let c = wait_for(&d, |c| c.failed == 1 && c.delivered == 1);
        assert_eq!((c.recent_delivered, c.recent), (1, 2));
        // Refreshes go only to receivers that want them: neither does.
        d.dispatch("p", &BTreeMap::new(), None, &[due(false, true)], 0);
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(d.counts().recent, 2);
        // A policy's own receivers replace the global ones.
        for _ in 0..RECENT {
            d.dispatch(
                "p",
                &BTreeMap::new(),
                Some(&[NotifierConfig::Log {}]),
                &[due(false, false)],
                0,
            );
        }
        let c = wait_for(&d, |c| c.delivered == 1 + RECENT as u64);
        assert_eq!(c.failed, 1, "since start");
        assert_eq!(
            (c.recent_delivered, c.recent),
            (RECENT, RECENT),
            "the failure aged out"
        );
    }
}
