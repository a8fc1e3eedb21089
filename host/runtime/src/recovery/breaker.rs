//! One circuit breaker, as Resilience4j defines it: closed (calls recorded in
//! a count- or time-based sliding window; a failure or slow-call rate at its
//! threshold, once the window holds `minimum_calls`, opens it), open (calls
//! refused until the wait is over; the wait may grow with each consecutive
//! opening), half-open (`half_open_calls` calls let through; their rates
//! close or reopen it), and the states an operator forces: forced-open,
//! disabled (everything through, nothing recorded) and metrics-only
//! (recorded, never moves).
//!
//! Time comes in as an argument, so a test moves it by hand. The state is
//! mirrored in an atomic so the guard's success path can look at it without
//! locking; everything else happens under one mutex per breaker.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

use warden_policy::recovery::BreakerOptions;

use super::window::Window;

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Calls go through and are recorded.
    Closed,
    /// Calls are refused until the wait is over.
    Open,
    /// A few calls go through to test the operation.
    HalfOpen,
    /// Refused until an operator resets it.
    ForcedOpen,
    /// Everything goes through; nothing is recorded.
    Disabled,
    /// Everything goes through and is recorded; the state never moves.
    MetricsOnly,
}

impl State {
    /// Every state, for exposition.
    pub const ALL: [State; 6] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
        State::MetricsOnly,
    ];

    /// Returns its name in the API and on `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::ForcedOpen => "forced-open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics-only",
        }
    }

    /// Returns true if and only if calls are refused in this state (half-open
    /// refuses only beyond its permitted calls).
    pub fn refuses(self) -> bool {
        matches!(self, State::Open | State::ForcedOpen)
    }

    fn code(self) -> u8 {
        self as u8
    }
}

/// How one call ended, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// It failed (in a class the breaker records).
    pub failed: bool,
    /// It took longer than the slow-call duration.
    pub slow: bool,
}

/// A change of state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// From.
    pub from: State,
    /// To.
    pub to: State,
    /// Why.
    pub reason: String,
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Go ahead.
    Allowed,
    /// Refused; the breaker expects to let calls through in this many ms
    /// (`None`: not known, as in half-open or forced-open).
    Refused(Option<u64>),
}

/// Counts over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Calls.
    pub calls: u32,
    /// Failed calls.
    pub failures: u32,
    /// Slow calls.
    pub slow: u32,
}

impl Counts {
    /// Percent failed, or `None` with no calls.
    pub fn failure_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| 100.0 * f64::from(self.failures) / f64::from(self.calls))
    }

    /// Percent slow, or `None` with no calls.
    pub fn slow_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| 100.0 * f64::from(self.slow) / f64::from(self.calls))
    }
}

/// How many transitions each breaker remembers.
pub const TRANSITIONS_KEPT: usize = 20;

/// What a breaker keeps, as saved across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    state: State,
    window: Window,
    /// Half-open: calls let through and their counts.
    half_open_permits: u32,
    half_open: SavedCounts,
    open_until_ms: i64,
    since_ms: i64,
    /// Consecutive openings, for the growing wait.
    openings: u32,
    transitions: VecDeque<Transition>,
    refused: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct SavedCounts {
    calls: u32,
    failures: u32,
    slow: u32,
}

/// A breaker as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct View {
    /// The state.
    pub state: State,
    /// Since when, ms since the epoch.
    pub since_ms: i64,
    /// Open: when calls may go through again.
    pub open_until_ms: Option<i64>,
    /// The window's counts (closed, metrics-only) or the half-open calls'.
    pub window: Counts,
    /// Percent failed, once the window holds `minimum_calls` calls.
    pub failure_rate: Option<f64>,
    /// Percent slow, likewise.
    pub slow_call_rate: Option<f64>,
    /// Calls refused since the breaker was created.
    pub refused: u64,
    /// Consecutive openings (the wait grows with them).
    pub openings: u32,
    /// The latest transitions, newest last.
    pub transitions: Vec<Transition>,
}

/// A circuit breaker.
#[derive(Debug)]
pub struct Breaker {
    /// Mirrors `inner.state` for the lock-free check of the guard.
    fast: AtomicU8,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    opts: BreakerOptions,
    s: Saved,
}

impl Breaker {
    /// A closed breaker with `opts`, created at `now_ms`.
    pub fn new(opts: &BreakerOptions, now_ms: i64) -> Breaker {
        Breaker::restore(
            opts,
            Saved {
                state: State::Closed,
                window: Window::new(opts.window, opts.window_size),
                half_open_permits: 0,
                half_open: SavedCounts::default(),
                open_until_ms: 0,
                since_ms: now_ms,
                openings: 0,
                transitions: VecDeque::new(),
                refused: 0,
            },
        )
    }

    /// A breaker as it was saved, under `opts` (a window of another shape
    /// starts empty).
    pub fn restore(opts: &BreakerOptions, mut saved: Saved) -> Breaker {
        if !saved.window.fits(opts.window, opts.window_size) {
            saved.window = Window::new(opts.window, opts.window_size);
        }
        Breaker {
            fast: AtomicU8::new(saved.state.code()),
            inner: Mutex::new(Inner {
                opts: opts.clone(),
                s: saved,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns what to save.
    pub fn save(&self) -> Saved {
        self.lock().s.clone()
    }

    /// Applies new options (a reload that kept the policy): the state stays,
    /// a window of another shape starts empty.
    pub fn reconfigure(&self, opts: &BreakerOptions) {
        let mut g = self.lock();
        if !g.s.window.fits(opts.window, opts.window_size) {
            g.s.window = Window::new(opts.window, opts.window_size);
        }
        g.opts = opts.clone();
    }

    /// Returns true if and only if the breaker is closed, without locking:
    /// the guard's success path.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.fast.load(Ordering::Relaxed) == State::Closed.code()
    }

    /// Records a successful, not slow call of a closed breaker: the guard's
    /// success path. Falls back to [`Breaker::record`] in any other state.
    #[inline]
    pub fn record_success(&self, now_ms: i64) -> Option<Transition> {
        let mut g = self.lock();
        if g.s.state == State::Closed {
            g.s.window.push(
                now_ms,
                Call {
                    failed: false,
                    slow: false,
                },
            );
            // A success can still be the call that brings the window to
            // `minimum_calls` with enough failures in it.
            return g.judge_window(now_ms, &self.fast);
        }
        g.record(
            now_ms,
            Call {
                failed: false,
                slow: false,
            },
            &self.fast,
        )
    }

    /// Asks whether a call may go ahead now; in half-open this takes one of
    /// the permitted calls. Moves open → half-open when the wait is over.
    pub fn acquire(&self, now_ms: i64) -> (Permit, Option<Transition>) {
        let mut g = self.lock();
        let t = g.tick(now_ms, true, &self.fast);
        let permit = match g.s.state {
            State::Closed | State::Disabled | State::MetricsOnly => Permit::Allowed,
            State::HalfOpen if g.s.half_open_permits < g.opts.half_open_calls => {
                g.s.half_open_permits += 1;
                Permit::Allowed
            }
            State::HalfOpen | State::ForcedOpen => {
                g.s.refused += 1;
                Permit::Refused(None)
            }
            State::Open => {
                g.s.refused += 1;
                Permit::Refused(Some((g.s.open_until_ms - now_ms).max(0) as u64))
            }
        };
        (permit, t)
    }

    /// Records how a call ended. Returns the transition it caused, if any.
    pub fn record(&self, now_ms: i64, call: Call) -> Option<Transition> {
        self.lock().record(now_ms, call, &self.fast)
    }

    /// Opens the breaker for `ms` (a plugin's `open-circuit`), unless an
    /// operator forced its state.
    pub fn open_for(&self, now_ms: i64, ms: u64, reason: String) -> Option<Transition> {
        let mut g = self.lock();
        if matches!(
            g.s.state,
            State::ForcedOpen | State::Disabled | State::MetricsOnly
        ) {
            return None;
        }
        g.s.openings += 1;
        let until = now_ms.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX));
        g.enter(now_ms, State::Open, reason, &self.fast);
        g.s.open_until_ms = until;
        Some(g.last())
    }

    /// Forces a state (forced-open, disabled, metrics-only) or, with
    /// `Closed`, resets: closed with an empty window.
    pub fn force(&self, now_ms: i64, to: State, reason: String) -> Option<Transition> {
        let mut g = self.lock();
        if to == State::Closed {
            let (kind, size) = (g.opts.window, g.opts.window_size);
            g.s.window = Window::new(kind, size);
            g.s.openings = 0;
        }
        if g.s.state == to {
            return None;
        }
        g.enter(now_ms, to, reason, &self.fast);
        Some(g.last())
    }

    /// Returns the state now, applying a wait that is over if the policy
    /// moves to half-open by itself.
    pub fn state(&self, now_ms: i64) -> (State, Option<Transition>) {
        let mut g = self.lock();
        let t = g.tick(now_ms, false, &self.fast);
        (g.s.state, t)
    }

    /// Returns the state now and, when open, the ms until calls may go
    /// through again.
    pub fn status(&self, now_ms: i64) -> (State, Option<u64>, Option<Transition>) {
        let mut g = self.lock();
        let t = g.tick(now_ms, false, &self.fast);
        let left = (g.s.state == State::Open).then(|| (g.s.open_until_ms - now_ms).max(0) as u64);
        (g.s.state, left, t)
    }

    /// Returns the breaker as the API shows it.
    pub fn view(&self, now_ms: i64) -> (View, Option<Transition>) {
        let mut g = self.lock();
        let t = g.tick(now_ms, false, &self.fast);
        let min = g.opts.minimum_calls;
        let (window, enough) = match g.s.state {
            State::HalfOpen => {
                let h = g.s.half_open;
                (
                    Counts {
                        calls: h.calls,
                        failures: h.failures,
                        slow: h.slow,
                    },
                    h.calls > 0,
                )
            }
            _ => {
                let c = g.s.window.counts(now_ms);
                (c, c.calls >= min)
            }
        };
        let view = View {
            state: g.s.state,
            since_ms: g.s.since_ms,
            open_until_ms: (g.s.state == State::Open).then_some(g.s.open_until_ms),
            window,
            failure_rate: window.failure_rate().filter(|_| enough),
            slow_call_rate: window.slow_rate().filter(|_| enough),
            refused: g.s.refused,
            openings: g.s.openings,
            transitions: g.s.transitions.iter().cloned().collect(),
        };
        (view, t)
    }
}

impl Inner {
    fn last(&self) -> Transition {
        self.s.transitions.back().cloned().expect("just pushed")
    }

    fn enter(&mut self, now_ms: i64, to: State, reason: String, fast: &AtomicU8) {
        let from = self.s.state;
        self.s.state = to;
        self.s.since_ms = now_ms;
        self.s.half_open_permits = 0;
        self.s.half_open = SavedCounts::default();
        fast.store(to.code(), Ordering::Relaxed);
        if self.s.transitions.len() == TRANSITIONS_KEPT {
            self.s.transitions.pop_front();
        }
        self.s.transitions.push_back(Transition {
            at_ms: now_ms,
            from,
            to,
            reason,
        });
    }

    /// The wait in open for the next opening: `wait_in_open` grown by
    /// `wait_multiplier` per consecutive opening, capped.
    fn wait_ms(&self) -> u64 {
        let o = &self.opts;
        let grown = o.wait_in_open_ms as f64
            * o.wait_multiplier
                .powi(self.s.openings.saturating_sub(1).min(64) as i32);
        (grown.min(o.max_wait_in_open_ms as f64) as u64).max(1)
    }

    fn open(&mut self, now_ms: i64, reason: &str, fast: &AtomicU8) {
        self.s.openings += 1;
        let wait = self.wait_ms();
        self.enter(
            now_ms,
            State::Open,
            format!("{reason}; open for {wait}ms"),
            fast,
        );
        self.s.open_until_ms = now_ms.saturating_add(wait as i64);
    }

    /// Moves with time alone: open → half-open once the wait is over (when
    /// asked, or by itself with `automatic_half_open`), half-open → open
    /// after `max_wait_in_half_open`.
    fn tick(&mut self, now_ms: i64, asked: bool, fast: &AtomicU8) -> Option<Transition> {
        match self.s.state {
            State::Open
                if now_ms >= self.s.open_until_ms && (asked || self.opts.automatic_half_open) =>
            {
                self.enter(
                    now_ms,
                    State::HalfOpen,
                    "the wait in open is over".into(),
                    fast,
                );
                Some(self.last())
            }
            State::HalfOpen
                if self.opts.max_wait_in_half_open_ms > 0
                    && now_ms - self.s.since_ms >= self.opts.max_wait_in_half_open_ms as i64 =>
            {
                let reason = format!(
                    "half-open for longer than {}ms without its {} calls",
                    self.opts.max_wait_in_half_open_ms, self.opts.half_open_calls
                );
                self.open(now_ms, &reason, fast);
                Some(self.last())
            }
            _ => None,
        }
    }

    fn record(&mut self, now_ms: i64, call: Call, fast: &AtomicU8) -> Option<Transition> {
        let ticked = self.tick(now_ms, true, fast);
        let moved = match self.s.state {
            State::Closed => {
                self.s.window.push(now_ms, call);
                self.judge_window(now_ms, fast)
            }
            State::MetricsOnly => {
                self.s.window.push(now_ms, call);
                None
            }
            State::HalfOpen => {
                let h = &mut self.s.half_open;
                h.calls += 1;
                h.failures += u32::from(call.failed);
                h.slow += u32::from(call.slow);
                self.judge_half_open(now_ms, fast)
            }
            // Not let through, so not counted.
            State::Open | State::ForcedOpen | State::Disabled => None,
        };
        moved.or(ticked)
    }

    fn over(&self, c: &Counts) -> Option<String> {
        let o = &self.opts;
        if let Some(r) = c.failure_rate().filter(|r| *r >= o.failure_rate) {
            return Some(format!(
                "failure rate {r:.1}% ≥ {}% over {} calls",
                o.failure_rate, c.calls
            ));
        }
        if let Some(r) = c.slow_rate().filter(|r| *r >= o.slow_call_rate) {
            return Some(format!(
                "slow-call rate {r:.1}% ≥ {}% over {} calls (slow: over {}ms)",
                o.slow_call_rate, c.calls, o.slow_call_ms
            ));
        }
        None
    }

    fn judge_window(&mut self, now_ms: i64, fast: &AtomicU8) -> Option<Transition> {
        let c = self.s.window.counts(now_ms);
        if c.calls < self.opts.minimum_calls {
            return None;
        }
        let reason = self.over(&c)?;
        self.open(now_ms, &reason, fast);
        Some(self.last())
    }

    fn judge_half_open(&mut self, now_ms: i64, fast: &AtomicU8) -> Option<Transition> {
        let h = self.s.half_open;
        if h.calls < self.opts.half_open_calls {
            return None;
        }
        let c = Counts {
            calls: h.calls,
            failures: h.failures,
            slow: h.slow,
        };
        if let Some(reason) = self.over(&c) {
            self.open(now_ms, &format!("half-open calls: {reason}"), fast);
        } else {
            let (kind, size) = (self.opts.window, self.opts.window_size);
            self.s.window = Window::new(kind, size);
            self.s.openings = 0;
            self.enter(
                now_ms,
                State::Closed,
                format!(
                    "half-open calls: {} of {} failed, {} slow",
                    c.failures, c.calls, c.slow
                ),
                fast,
            );
        }
        Some(self.last())
    }
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
