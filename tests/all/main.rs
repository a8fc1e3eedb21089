//! The one integration-test binary of the `warden` crate.
//!
//! - `guests`: every guest component end to end through the host, one test per
//!   guest (a guest without one fails to compile).
//! - `containment`: misbehaving plugins are stopped and reported while other
//!   plugins keep evaluating.
//! - `bad_input`: files that are not usable plugins get errors that say why.
//! - `cache`: compiled plugins are cached on disk and reused.
//! - `cli`: the `warden` binary as a user runs it.
//! - `policies`: policy files, `warden check`, hot reload, schedules and state.
//! - `daemon`: `warden run` end to end: status, reload on edit and SIGHUP,
//!   shutdown, a bad config file, the evaluation and failure counters.
//! - `http`: the HTTP client, calls and waits those tests share.
//! - `api`: resources, cleanup tasks and `/health` over HTTP.
//! - `triggers`: what runs a policy: thresholds, cron, events, memory pressure.
//! - `metrics`: the metrics pipeline end to end: push, refusals, batch files,
//!   restarts, a real Prometheus scraping.
//! - `cleanup`: cleanup policies over real trees: scope, cap, dry run, history.
//! - `alerts`: alert notifications to a real Alertmanager and a webhook, and
//!   alert state across restarts.
//! - `findings`: detector findings stored, listed, notified (webhook, real
//!   Alertmanager), on `/metrics`, triggering policies, across restarts;
//!   analytics.
//! - `expressions`: the threshold plugin's rates, ratios, quantiles, absence
//!   and grouping against the real series store.
//! - `replay`: `warden replay` as a user runs it.
//! - `exposure`: what the API lets in and out (issue 12): `Host`, content
//!   types, resource owners and handles, personal data, hostile pushes
//!   checked by `promtool`, secrets in answers and logs.
//! - `faults`: the daemon under abuse and faults (issue 12): 2,000 idle
//!   connections, a full tmpfs, an untrusted data directory, a cleanup
//!   policy going live mid-edit.
//! - `compat`: a plugin built against WIT 0.1.0 (a frozen fixture) loads,
//!   checks and runs through the daemon.
//! - `init`: `warden check` and reloads run each plugin's `init`; config
//!   errors point at their line and column.
//! - `warm`: warm instances, their recycling, and plugin state.
//! - `scaffold`: `warden plugin new` crates built outside the repository,
//!   checked and run through the daemon.
//! - `recovery`: failures and outcomes of a real failing HTTP service reported
//!   to the daemon: breakers, retry budget, fallbacks, restarts, bad input.
//! - `recovery_guard`: the same service called through the library's guard,
//!   in-process, with a hand-moved clock.
//! - `quotas`: quotas enforced through the daemon (issue 17): 429 on
//!   registration, checks, a warning to a real Alertmanager, a cleanup
//!   action, state across a restart, located errors from `warden check`.
//! - `resources`: registered resources across a restart, their audit
//!   trail and orphans; what a watched process holds, read by the daemon
//!   and listed by the API.

/// Fails to compile unless a test function named after the guest exists in scope.
macro_rules! assert_test_exists {
    ($name:ident) => {
        #[expect(unused_imports, reason = "the import only proves the test exists")]
        use self::$name as _;
    };
}

mod alerts;
mod api;
mod bad_input;
mod cache;
mod cleanup;
mod cli;
mod compat;
mod containment;
mod daemon;
mod exposure;
mod expressions;
mod faults;
mod findings;
mod guests;
mod http;
mod init;
mod metrics;
mod policies;
mod quotas;
mod recovery;
mod recovery_guard;
mod replay;
mod resources;
mod scaffold;
mod triggers;
mod util;
mod warm;
