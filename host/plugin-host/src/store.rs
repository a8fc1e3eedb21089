//! The state behind one evaluation's `Store`: a WASI context that grants
//! nothing, the memory cap, the deadline host calls obey, captured stdio,
//! and what the host imports serve (the policy's config, its data source
//! within the evaluation's read budget, its plugin state). A warm instance
//! keeps its store across evaluations, so everything per call is reset by
//! [`StoreState::begin_call`]; a trap poisons the whole store, which is then
//! dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::data::{Budget, DataSource};
use super::limits::{Limits, MemoryCap};
use super::output::Capture;
use super::plugin_state::StateCell;
use warden_core::records::{
    Reduce, Reduced, ResourceFilter, ResourceSet, Series, SeriesSelector, TimestampMs,
};

/// A plugin may log this many lines per evaluation; the rest are counted, so a
/// looping `log` call cannot flood the daemon's log.
const MAX_LOG_LINES: u32 = 256;
/// Longer log messages are cut to this many bytes.
const MAX_LOG_BYTES: usize = 4096;

/// Log levels a plugin may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Who is being evaluated, for the host imports and for tagging output.
#[derive(Clone)]
pub(crate) struct CallInfo {
    pub(crate) policy: Arc<str>,
    pub(crate) plugin: Arc<str>,
    pub(crate) config_json: Arc<str>,
    pub(crate) data: Arc<dyn DataSource>,
    pub(crate) now_ms: TimestampMs,
    /// True if and only if `now_ms` is a simulated time (a replay): the
    /// plugin's `now` import then answers it instead of the wall clock.
    pub(crate) simulated: bool,
}

pub(crate) struct StoreState {
    /// Built on first use: most evaluations never call WASI (a plugin reaches
    /// it only to print or panic), and building it is a third of instantiation.
    wasi: Option<WasiCtx>,
    pub(crate) table: ResourceTable,
    pub(crate) cap: MemoryCap,
    /// When the evaluation must end; blocking host calls end by then.
    pub(crate) deadline: Instant,
    /// What `query-series`, `query-reduced` and `list-resources` may still copy.
    pub(crate) budget: Budget,
    pub(crate) call: CallInfo,
    pub(crate) stdout: Capture,
    pub(crate) stderr: Capture,
    log_lines: u32,
    pub(crate) logs_dropped: u32,
    pub(crate) plugin_state: StateCell,
}

impl StoreState {
    /// The state of a store for `call` under `limits`, whose deadline
    /// starts now.
    pub(crate) fn new(call: CallInfo, limits: &Limits) -> Self {
        let stdout = Capture::default();
        let stderr = Capture::default();
        let now = Instant::now();
        StoreState {
            wasi: None,
            table: ResourceTable::new(),
            cap: MemoryCap::new(limits.memory_bytes),
            deadline: now
                .checked_add(limits.timeout)
                .unwrap_or(now + Duration::from_secs(3600)),
            budget: Budget::new(limits.max_query_bytes),
            call,
            stdout,
            stderr,
            log_lines: 0,
            logs_dropped: 0,
            plugin_state: StateCell::default(),
        }
    }

    /// Starts a call at `now_ms` that sees the plugin state `current` and may
    /// store up to `state_limit` bytes; per-call counters, the deadline of
    /// blocking host calls and the read budget start again under `limits`.
    pub(crate) fn begin_call(
        &mut self,
        now_ms: TimestampMs,
        simulated: bool,
        current: Option<Arc<[u8]>>,
        state_limit: u64,
        limits: &Limits,
    ) {
        let now = Instant::now();
        self.deadline = now
            .checked_add(limits.timeout)
            .unwrap_or(now + Duration::from_secs(3600));
        self.budget = Budget::new(limits.max_query_bytes);
        self.call.now_ms = now_ms;
        self.call.simulated = simulated;
        self.log_lines = 0;
        self.logs_dropped = 0;
        self.plugin_state.begin(current, state_limit);
    }

    pub(crate) fn state_get(&self) -> Option<Vec<u8>> {
        self.plugin_state.get()
    }

    pub(crate) fn state_set(&mut self, value: Vec<u8>) -> Result<(), String> {
        self.plugin_state.set(value)
    }

    pub(crate) fn state_clear(&mut self) {
        self.plugin_state.clear();
    }

    /// Returns the state for a load-time check, which runs no plugin code.
    pub(crate) fn probe(plugin: &str) -> Self {
        StoreState::new(
            CallInfo {
                policy: "(load check)".into(),
                plugin: plugin.into(),
                config_json: "{}".into(),
                data: Arc::new(super::data::NoData),
                now_ms: 0,
                simulated: false,
            },
            &Limits::default(),
        )
    }

    pub(crate) fn log(&mut self, level: LogLevel, mut message: String) {
        if self.log_lines >= MAX_LOG_LINES {
            self.logs_dropped += 1;
            return;
        }
        self.log_lines += 1;
        if message.len() > MAX_LOG_BYTES {
            let mut end = MAX_LOG_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str(" …");
        }
        let (policy, plugin) = (&*self.call.policy, &*self.call.plugin);
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "warden::plugin", policy, plugin, "{message}");
            }
            LogLevel::Debug => {
                tracing::debug!(target: "warden::plugin", policy, plugin, "{message}");
            }
            LogLevel::Info => {
                tracing::info!(target: "warden::plugin", policy, plugin, "{message}");
            }
            LogLevel::Warn => {
                tracing::warn!(target: "warden::plugin", policy, plugin, "{message}");
            }
            LogLevel::Error => {
                tracing::error!(target: "warden::plugin", policy, plugin, "{message}");
            }
        }
    }

    pub(crate) fn now_ms(&self) -> TimestampMs {
        if self.call.simulated {
            return self.call.now_ms;
        }
        warden_core::clock::now_ms()
    }

    pub(crate) fn config_json(&self) -> String {
        self.call.config_json.to_string()
    }

    pub(crate) fn query_series(
        &mut self,
        selector: &SeriesSelector,
        window_ms: u64,
    ) -> Result<Vec<Series>, String> {
        self.call.data.query_series(
            selector,
            Duration::from_millis(window_ms),
            self.call.now_ms,
            &mut self.budget,
        )
    }

    pub(crate) fn query_reduced(
        &mut self,
        selector: &SeriesSelector,
        window_ms: u64,
        how: &Reduce,
    ) -> Result<Vec<Reduced>, String> {
        self.call.data.query_reduced(
            selector,
            Duration::from_millis(window_ms),
            self.call.now_ms,
            how,
            &mut self.budget,
        )
    }

    pub(crate) fn list_resources(
        &mut self,
        filter: &ResourceFilter,
    ) -> Result<ResourceSet, String> {
        self.call.data.list_resources(filter, &mut self.budget)
    }

    /// Sends what the plugin wrote to stdout and stderr to the log, one event
    /// per line, and returns what best explains a failure: its panic message,
    /// else the last line it wrote to stderr.
    pub(crate) fn flush_output(&self) -> Option<String> {
        let (policy, plugin) = (&*self.call.policy, &*self.call.plugin);
        let mut explanation = None;
        for (stream, capture) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (text, dropped) = capture.take();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                tracing::info!(target: "warden::plugin", policy, plugin, stream, "{line}");
            }
            if stream == "stderr" {
                explanation = explain(&text);
            }
            if dropped > 0 {
                tracing::warn!(target: "warden::plugin", policy, plugin, stream, dropped, "plugin output over the capture limit was dropped");
            }
        }
        if self.logs_dropped > 0 {
            tracing::warn!(target: "warden::plugin", policy, plugin, dropped = self.logs_dropped, "plugin log lines over the per-evaluation limit were dropped");
        }
        explanation
    }
}

/// Picks the panic message out of what a Rust guest printed when it panicked
/// (`thread '…' panicked at FILE:LINE:COL:` then the message, then a note about
/// backtraces), or else the last non-empty line.
fn explain(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if let Some(i) = lines.iter().rposition(|l| l.contains("panicked at")) {
        let at = &lines[i][lines[i].find("panicked at").unwrap_or(0)..];
        let message: Vec<&str> = lines[i + 1..]
            .iter()
            .copied()
            .take_while(|l| !l.starts_with("note: "))
            .collect();
        return Some(format!("{} {}", at, message.join(" ")).trim().to_owned());
    }
    lines.last().map(|l| (*l).to_owned())
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self.wasi.get_or_insert_with(|| {
                // Nothing granted: no preopened directories, no environment, no
                // arguments, no network (the builder's defaults deny sockets and
                // name lookups). Clocks and randomness stay: harmless, and std
                // needs them.
                WasiCtxBuilder::new()
                    .stdout(self.stdout.clone())
                    .stderr(self.stderr.clone())
                    .build()
            }),
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::explain;

    #[test]
    fn explain_prefers_the_panic_message() {
        let out = "thread '<unnamed>' panicked at src/lib.rs:57:23:\nboom went the plugin\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            explain(out).as_deref(),
            Some("panicked at src/lib.rs:57:23: boom went the plugin")
        );
        assert_eq!(explain("one\ntwo\n\n").as_deref(), Some("two"));
        assert_eq!(explain(""), None);
    }
}
