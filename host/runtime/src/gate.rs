//! How many evaluations run at once: at most a daemon-wide number, and each
//! policy at most once at a time (a cleanup policy triggered by its
//! schedule, by memory pressure and by hand never runs twice over).
//!
//! Triggers wait for their turn, holding no thread while they wait. A
//! run-now does not wait: past the bounds it is refused with the reason
//! ([`Busy`]), which the API answers as `429`. A pass is held by the
//! evaluation's own blocking task, so a client that hangs up does not free
//! a slot still in use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Evaluations at once across the daemon when the config does not say
/// (`evaluations.max_concurrent`): several policies may decide in parallel,
/// and no burst of them can take over the blocking pool.
pub const DEFAULT_MAX_EVALUATIONS: usize = 8;

/// The bounds on evaluations running at once.
#[derive(Debug)]
pub struct Gate {
    daemon: Arc<Semaphore>,
    max: usize,
    policies: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new(DEFAULT_MAX_EVALUATIONS)
    }
}

/// Leave to run one evaluation; its slots are freed when it drops.
#[derive(Debug)]
pub struct Pass {
    _policy: OwnedSemaphorePermit,
    _daemon: OwnedSemaphorePermit,
}

/// Why an evaluation may not start now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// The policy is being evaluated already.
    #[error(
        "policy `{0}` is running already; a policy runs at most once at a time, so try again when this run has finished"
    )]
    Policy(String),
    /// The daemon runs as many evaluations as it may.
    #[error(
        "the daemon is running {0} evaluations, the most it runs at once (`evaluations.max_concurrent`); try again shortly"
    )]
    Daemon(usize),
}

impl Gate {
    /// A gate letting `max` evaluations (at least 1) run at once.
    pub fn new(max: usize) -> Gate {
        let max = max.max(1);
        Gate {
            daemon: Arc::new(Semaphore::new(max)),
            max,
            policies: Mutex::new(HashMap::new()),
        }
    }

    fn policy(&self, name: &str) -> Arc<Semaphore> {
        let mut p = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            p.entry(name.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(1))),
        )
    }

    /// Waits until `policy` may run, then returns its pass.
    pub async fn enter(&self, policy: &str) -> Pass {
        // Always the policy first, then the daemon: one order, no deadlock.
        let own = self
            .policy(policy)
            .acquire_owned()
            .await
            .expect("the gate's semaphores are never closed");
        let daemon = Arc::clone(&self.daemon)
            .acquire_owned()
            .await
            .expect("the gate's semaphores are never closed");
        Pass {
            _policy: own,
            _daemon: daemon,
        }
    }

    /// Returns a pass for `policy` if it may run now, or why not.
    pub fn try_enter(&self, policy: &str) -> Result<Pass, Busy> {
        let own = self
            .policy(policy)
            .try_acquire_owned()
            .map_err(|_| Busy::Policy(policy.to_owned()))?;
        let daemon = Arc::clone(&self.daemon)
            .try_acquire_owned()
            .map_err(|_| Busy::Daemon(self.max))?;
        Ok(Pass {
            _policy: own,
            _daemon: daemon,
        })
    }

    /// Forgets the policies `keep` says are gone and not running.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.policies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, s| keep(name) || s.available_permits() == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_policy_runs_once_at_a_time_and_the_daemon_so_many() {
        let g = Gate::new(2);
        let a = g.try_enter("a").unwrap();
        assert_eq!(g.try_enter("a").unwrap_err(), Busy::Policy("a".into()));
        let b = g.try_enter("b").unwrap();
        let busy = g.try_enter("c").unwrap_err();
        assert_eq!(busy, Busy::Daemon(2));
        assert!(
            busy.to_string().contains("evaluations.max_concurrent"),
            "{busy}"
        );
        // A refused try holds nothing: `c` may run once `a` is done.
        drop(a);
        let c = g.try_enter("c").unwrap();
        // A trigger waits for its turn instead.
        let waiting = tokio::spawn({
            let g = Arc::new(g);
            let g2 = Arc::clone(&g);
            async move {
                let _pass = g2.enter("b").await;
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop((b, c));
        tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("the waiting trigger got its turn")
            .unwrap();
    }
}
