//! The audit trail: who registered, used and released which resource, and
//! when. A ring of the last N events (default 10,000), persisted with the
//! registry's log.

use std::collections::VecDeque;
use std::sync::Arc;

use warden_core::records::TimestampMs;

/// Events kept by default (`resources.audit_events`).
pub const DEFAULT_AUDIT_EVENTS: usize = 10_000;

/// An access goes in the trail at most once per resource per this long:
/// applications touch a resource on every use, thousands of times a
/// minute, and a trail of touches would push out the registrations and
/// releases it is kept for. "Used at least once in this minute" is what an
/// operator asks of it.
pub const ACCESS_EVERY_MS: TimestampMs = 60_000;

/// Who did something to a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A caller, by the owner name it gave the API (empty if it gave none).
    Caller(String),
    /// A cleanup policy, by name.
    Policy(String),
    /// Warden itself (the orphan sweep, a request to an owner given up on).
    Warden,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Caller(c) if c.is_empty() => f.write_str("(unnamed caller)"),
            Actor::Caller(c) => f.write_str(c),
            Actor::Policy(p) => write!(f, "policy:{p}"),
            Actor::Warden => f.write_str("warden"),
        }
    }
}

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Registered.
    Register,
    /// Used (at most one event per resource per [`ACCESS_EVERY_MS`]).
    Access,
    /// Released by its owner (or, for a resource without one, by anyone).
    Release,
    /// Released by a caller that is not its owner (`?force=true`).
    ForcedRelease,
    /// Released by a cleanup policy.
    PolicyRelease,
    /// Its owner process is gone: marked an orphan.
    Orphaned,
    /// Released because it depends on a resource released with
    /// [`super::ReleaseMode::Cascade`] (named by the event's `on`).
    CascadeRelease,
    /// Made to depend on another resource (the event's `on`).
    DependencyAdded,
    /// No longer depends on another resource (the event's `on`).
    DependencyRemoved,
    /// A cleanup policy asked its owner to release it (or evict it).
    ReleaseRequested,
    /// Its owner refused a policy's request to release it.
    ReleaseRefused,
    /// Its owner never answered a policy's request: released as the policy
    /// decided (a `policy-release` event follows, unless others depend on
    /// it).
    RequestUnacknowledged,
}

/// One event of the trail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    /// When, ms since the epoch.
    pub at_ms: TimestampMs,
    /// The resource's handle.
    pub handle: u64,
    /// Its name.
    pub name: String,
    /// What was done.
    pub action: Action,
    /// Who did it: the caller's name, `policy:NAME` or `warden`.
    pub actor: String,
    /// The other resource of a dependency added or removed, or the one
    /// whose release cascaded to this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<u64>,
}

/// An event as held: the actor shared with the resource's owner when it
/// is the owner, so that a registration costs one allocation less.
#[derive(Debug, Clone)]
pub(super) struct Event {
    pub(super) at_ms: TimestampMs,
    pub(super) seq: u64,
    pub(super) name: Box<str>,
    pub(super) action: Action,
    pub(super) actor: Arc<str>,
    /// The other resource's sequence number ([`AuditEvent::on`]), 0 if
    /// none.
    pub(super) other: u64,
}

/// The last `cap` events, oldest first; `unsaved` of them are not in the
/// log yet.
#[derive(Debug)]
pub(super) struct Trail {
    events: VecDeque<Event>,
    cap: usize,
    pub(super) unsaved: usize,
}

impl Trail {
    pub(super) fn new(cap: usize) -> Self {
        Trail {
            events: VecDeque::new(),
            cap,
            unsaved: 0,
        }
    }

    /// Adds `e`, forgetting the oldest past the bound.
    pub(super) fn push(&mut self, e: Event) {
        if self.cap == 0 {
            return;
        }
        if self.events.len() >= self.cap {
            self.events.pop_front();
        }
        self.events.push_back(e);
        self.unsaved = (self.unsaved + 1).min(self.events.len());
    }

    /// Events oldest first.
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = &Event> {
        self.events.iter()
    }

    /// The events not in the log yet, oldest first.
    pub(super) fn unsaved(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().skip(self.events.len() - self.unsaved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64) -> Event {
        Event {
            at_ms: 0,
            seq,
            name: "n".into(),
            action: Action::Register,
            actor: Arc::from("a"),
            other: 0,
        }
    }

    #[test]
    fn the_trail_keeps_the_last_events_and_counts_what_is_unsaved() {
        let mut t = Trail::new(3);
        for s in 0..5 {
            t.push(ev(s));
        }
        assert_eq!(t.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(t.unsaved().count(), 3);
        t.unsaved = 0;
        t.push(ev(5));
        assert_eq!(t.unsaved().map(|e| e.seq).collect::<Vec<_>>(), [5]);
        assert_eq!(
            Actor::Policy("tmp".into()).to_string(),
            "policy:tmp",
            "policies are named as the issue asks"
        );
    }
}
