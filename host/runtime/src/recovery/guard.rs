//! The in-process guard: `guard.call(|| …)` asks the breaker before the call
//! and reports the outcome after it, in the embedding service's own process.
//! A failure gets the policy's decision (through the plugin) in the error;
//! `run` follows those decisions, sleeping between retries.
//!
//! The success path of a closed breaker is what every call pays, so it takes
//! no lock but the breaker's window: the state is read from an atomic, the
//! time from the coarse clock, the call is counted for the retry budget in
//! an atomic (folded into the budget's current second on its next use), and
//! the success is remembered as the operation's latest (the history shown
//! to the plugin then holds one success for a run of them).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use warden_core::records::{Attempt, ErrorClass, Outcome, RecoveryDecision};

use super::Recovery;
use super::breaker::{Call, Permit};
use super::circuit::Circuit;
use super::classify::RawError;
use super::decide::DecidedBy;
use super::report::FailureReport;
use super::service::ReportError;

/// What the guard reads from an error: its class if the error knows it, or
/// the raw facts the host classifies.
pub trait IntoRawError {
    /// Returns the raw error.
    fn raw_error(&self) -> RawError;

    /// Returns the class, if the error knows it (then no rule is consulted).
    fn class(&self) -> Option<ErrorClass> {
        None
    }
}

impl IntoRawError for std::io::Error {
    fn raw_error(&self) -> RawError {
        RawError::from(self)
    }
}

impl IntoRawError for RawError {
    fn raw_error(&self) -> RawError {
        self.clone()
    }
}

impl IntoRawError for ErrorClass {
    fn raw_error(&self) -> RawError {
        RawError::default()
    }
    fn class(&self) -> Option<ErrorClass> {
        Some(*self)
    }
}

impl IntoRawError for String {
    fn raw_error(&self) -> RawError {
        RawError {
            message: Some(self.chars().take(super::report::MAX_MESSAGE).collect()),
            ..RawError::default()
        }
    }
}

/// Why a guarded call did not return a value.
#[derive(Debug)]
pub enum GuardError<E> {
    /// The breaker refused the call: it was not made.
    Refused {
        /// The circuit.
        circuit: String,
        /// When the breaker expects to let calls through, if known.
        retry_in_ms: Option<u64>,
    },
    /// The call failed; `decision` is the policy's answer.
    Failed {
        /// The call's error.
        error: E,
        /// What to do now.
        decision: RecoveryDecision,
        /// Who decided.
        decided_by: DecidedBy,
        /// The attempt that failed.
        attempt: u32,
    },
    /// The failure could not be reported (no policy covers the operation,
    /// or too many circuits); the call's error is kept.
    Unreported {
        /// The call's error.
        error: E,
        /// Why it was not reported.
        why: String,
    },
}

impl<E: std::fmt::Display> std::fmt::Display for GuardError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuardError::Refused { circuit, .. } => {
                write!(f, "the circuit breaker `{circuit}` refused the call")
            }
            GuardError::Failed {
                error, decision, ..
            } => write!(f, "{error} (decision: {decision:?})"),
            GuardError::Unreported { error, why } => write!(f, "{error} (not reported: {why})"),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for GuardError<E> {}

/// A guard for one operation (and labels), resolved once: calls through it
/// pay no lookup.
#[derive(Debug, Clone)]
pub struct Guard {
    rec: Arc<Recovery>,
    circuit: Arc<Circuit>,
    labels: BTreeMap<String, String>,
    counted: Arc<Counted>,
}

/// Calls and the latest success, counted without the circuit's lock.
#[derive(Debug, Default)]
struct Counted {
    calls: AtomicU64,
    last_success_ms: AtomicI64,
}

impl Recovery {
    /// Returns a guard for `operation` with `labels`, covered by the policy
    /// that would decide a report of it.
    pub fn guard(
        self: &Arc<Self>,
        operation: &str,
        labels: &[(&str, &str)],
    ) -> Result<Guard, ReportError> {
        let map: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let pairs: Vec<(&str, &str)> = labels.to_vec();
        warden_metrics::validate::labels(&pairs, &self.pii)
            .map_err(|e| ReportError::Refused(super::report::Refused(vec![e])))?;
        if operation.is_empty() || operation.len() > super::report::MAX_OPERATION {
            return Err(ReportError::Refused(super::report::Refused(vec![
                warden_metrics::validate::Invalid::new(
                    "operation",
                    format!("must be 1 to {} bytes long", super::report::MAX_OPERATION),
                ),
            ])));
        }
        let e = self
            .select(operation, &map)
            .ok_or_else(|| ReportError::NoPolicy(operation.to_owned()))?;
        let now = self.clock.now_ms();
        let circuit = self.circuit_for(&e, operation, &map, now)?;
        Ok(Guard {
            rec: Arc::clone(self),
            circuit,
            labels: map,
            counted: Arc::default(),
        })
    }

    /// Calls `f` guarded as `operation` (no labels), resolving the guard once
    /// per operation name and keeping it until the policies change. The
    /// thread's last guard is tried first (one string comparison), then a
    /// map shared by all threads.
    pub fn call<T, E: IntoRawError>(
        self: &Arc<Self>,
        operation: &str,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, GuardError<E>> {
        let generation = self.generation.load(Ordering::Acquire);
        let me = Arc::as_ptr(self) as usize;
        let last = LAST.with(|l| {
            l.borrow().as_ref().and_then(|(who, g, op, guard)| {
                (*who == me && *g == generation && op == operation).then(|| Arc::clone(guard))
            })
        });
        if let Some(guard) = last {
            return guard.call(f);
        }
        let cached = self
            .by_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(operation)
            .cloned();
        let guard = match cached {
            Some(g) => g,
            None => match self.guard(operation, &[]) {
                Ok(g) => {
                    let g = Arc::new(g);
                    let mut by_name = self.by_name.write().unwrap_or_else(|p| p.into_inner());
                    // A sync since `generation` was read may have resolved
                    // this guard against replaced policies: use it once,
                    // keep it nowhere.
                    if self.generation.load(Ordering::Acquire) != generation {
                        drop(by_name);
                        return g.call(f);
                    }
                    by_name.insert(operation.to_owned(), Arc::clone(&g));
                    g
                }
                Err(why) => {
                    return f().map_err(|error| GuardError::Unreported {
                        error,
                        why: why.to_string(),
                    });
                }
            },
        };
        LAST.with(|l| {
            *l.borrow_mut() = Some((me, generation, operation.to_owned(), Arc::clone(&guard)));
        });
        guard.call(f)
    }
}

/// The service (by address), the policies' generation, the operation and
/// its guard.
type Last = Option<(usize, u64, String, Arc<Guard>)>;

thread_local! {
    /// The guard this thread used last through `Recovery::call`.
    static LAST: std::cell::RefCell<Last> = const { std::cell::RefCell::new(None) };
}

impl Guard {
    /// Returns the circuit's id.
    pub fn circuit(&self) -> &str {
        &self.circuit.id
    }

    /// Calls `f` once, as attempt 1.
    #[inline]
    pub fn call<T, E: IntoRawError>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, GuardError<E>> {
        self.attempt(1, f)
    }

    /// Calls `f` as attempt `attempt` of the operation.
    #[inline]
    pub fn attempt<T, E: IntoRawError>(
        &self,
        attempt: u32,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, GuardError<E>> {
        let clock = &self.rec.clock;
        let closed = self.circuit.breaker.is_closed();
        if !closed {
            self.permit()?;
        }
        let start = clock.now_ms();
        let result = f();
        let end = clock.now_ms();
        self.finish(closed, attempt, start, end, result)
    }

    /// Calls the future `f` makes once, as attempt 1. A failure's decision
    /// is taken on the calling task (one plugin call, some microseconds).
    pub async fn call_async<T, E: IntoRawError, Fut: Future<Output = Result<T, E>>>(
        &self,
        f: impl FnOnce() -> Fut,
    ) -> Result<T, GuardError<E>> {
        self.attempt_async(1, f).await
    }

    async fn attempt_async<T, E: IntoRawError, Fut: Future<Output = Result<T, E>>>(
        &self,
        attempt: u32,
        f: impl FnOnce() -> Fut,
    ) -> Result<T, GuardError<E>> {
        let clock = &self.rec.clock;
        let closed = self.circuit.breaker.is_closed();
        if !closed {
            self.permit()?;
        }
        let start = clock.now_ms();
        let result = f().await;
        let end = clock.now_ms();
        self.finish(closed, attempt, start, end, result)
    }

    /// Calls `f` until it succeeds or the policy says to stop, sleeping as
    /// each `retry-after` decision says. Returns the last error otherwise.
    pub fn run<T, E: IntoRawError>(
        &self,
        mut f: impl FnMut() -> Result<T, E>,
    ) -> Result<T, GuardError<E>> {
        let mut attempt = 1;
        loop {
            match self.attempt(attempt, &mut f) {
                Err(GuardError::Failed {
                    decision: RecoveryDecision::RetryAfter(ms),
                    ..
                }) => {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// [`Guard::run`] for futures, sleeping with tokio's timer.
    pub async fn run_async<T, E: IntoRawError, Fut: Future<Output = Result<T, E>>>(
        &self,
        mut f: impl FnMut() -> Fut,
    ) -> Result<T, GuardError<E>> {
        let mut attempt = 1;
        loop {
            match self.attempt_async(attempt, &mut f).await {
                Err(GuardError::Failed {
                    decision: RecoveryDecision::RetryAfter(ms),
                    ..
                }) => {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn permit<E>(&self) -> Result<(), GuardError<E>> {
        let now = self.rec.clock.now_ms();
        let (permit, t) = self.circuit.breaker.acquire(now);
        self.rec.transitioned(&self.circuit, t);
        match permit {
            Permit::Allowed => Ok(()),
            Permit::Refused(retry_in_ms) => {
                let e = self.circuit.entry();
                self.circuit.side().history.push(
                    e.opts.history,
                    Attempt {
                        at_ms: now,
                        outcome: Outcome::Rejected,
                        duration_ms: 0,
                    },
                );
                Err(GuardError::Refused {
                    circuit: self.circuit.id.clone(),
                    retry_in_ms,
                })
            }
        }
    }

    #[inline]
    fn finish<T, E: IntoRawError>(
        &self,
        closed: bool,
        attempt: u32,
        start: i64,
        end: i64,
        result: Result<T, E>,
    ) -> Result<T, GuardError<E>> {
        let took = (end - start).max(0) as u64;
        if attempt == 1 {
            self.counted.calls.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(v) => {
                let slow = took > self.circuit.slow_ms.load(Ordering::Relaxed);
                let t = if closed && !slow {
                    self.circuit.breaker.record_success(end)
                } else {
                    self.circuit.breaker.record(
                        end,
                        Call {
                            failed: false,
                            slow,
                        },
                    )
                };
                if t.is_some() {
                    self.rec.transitioned(&self.circuit, t);
                }
                self.counted.last_success_ms.store(end, Ordering::Relaxed);
                Ok(v)
            }
            Err(error) => Err(self.failed(error, attempt, end, took)),
        }
    }

    #[cold]
    fn failed<E: IntoRawError>(
        &self,
        error: E,
        attempt: u32,
        now: i64,
        took: u64,
    ) -> GuardError<E> {
        // Fold what the success path counted into the circuit's budget and
        // history before the plugin looks at them.
        {
            let e = self.circuit.entry();
            let mut side = self.circuit.side();
            let calls = self.counted.calls.swap(0, Ordering::Relaxed);
            // The report of attempt 1 counts its own call.
            side.budget
                .calls_n(now, calls.saturating_sub(u64::from(attempt == 1)));
            let last_ok = self.counted.last_success_ms.swap(0, Ordering::Relaxed);
            if last_ok > 0 {
                side.history.push(
                    e.opts.history,
                    Attempt {
                        at_ms: last_ok,
                        outcome: Outcome::Success,
                        duration_ms: 0,
                    },
                );
            }
        }
        let raw = error.raw_error();
        let report = FailureReport {
            operation: self.circuit.operation.clone(),
            class: error.class(),
            error: RawError {
                message: raw
                    .message
                    .map(|m| m.chars().take(super::report::MAX_MESSAGE).collect()),
                ..raw
            },
            attempt,
            duration_ms: Some(took),
            timed_out: false,
            labels: self.labels.clone(),
        };
        match self.rec.report_failure(report) {
            Ok(a) => GuardError::Failed {
                error,
                decision: a.decision,
                decided_by: a.record.decided_by,
                attempt,
            },
            Err(why) => GuardError::Unreported {
                error,
                why: why.to_string(),
            },
        }
    }
}
