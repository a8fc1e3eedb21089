//! Requests to owners (issue 16, "releases reach owners"): when a cleanup
//! policy releases or evicts a registered resource whose owner listens
//! ([`Registry::on_request`]), the registry asks the owner instead of
//! forgetting the resource behind its back.
//!
//! - With a listener for the owner, the resource stays registered, marked
//!   ([`super::View::release_requested`]), and an [`OwnerRequest`] goes to
//!   every listener of that owner. The owner answers with
//!   [`Registry::ack`]: released (the resource goes) or refused (it stays,
//!   and the refusal is in the audit trail). An owner's own release
//!   answers it too.
//! - Unanswered, the request is sent again after
//!   [`RequestOptions::ack_timeout_ms`], doubled at each attempt, by
//!   [`Registry::retry_requests`] (the daemon calls it on an interval).
//!   After [`RequestOptions::max_attempts`] it is reported: released as the
//!   policy decided, in the audit trail as
//!   [`Action::RequestUnacknowledged`], counted, and listed
//!   ([`Registry::requests`]).
//! - Without a listener (or an owner), the policy's release happens at
//!   once, as before: the application learns of it on its next call.
//! - A `close` (a policy's `close-resource` on a registered descriptor or
//!   socket) is only ever asked: without a listening owner it is refused
//!   ([`ReleaseError::NotAsked`]), and past its last attempt it is reported
//!   while the resource stays registered, because it is still open.
//!
//! Delivery is at least once: a listener that joins late is sent its
//! owner's pending requests, and a retry may cross an answer. A listener
//! is a callback run outside the registry's locks; it must not block, and
//! returns false when it cannot take a request (a full queue), which is
//! counted and made good by the next attempt. Requests live in memory:
//! after a restart the resources are plain registered ones again, and the
//! policy decides anew on its next run.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use warden_core::records::TimestampMs;

use super::deps::{ReleaseError, ReleaseMode, ReleaseOutcome};
use super::{Action, Actor, Event, Inner, Registry};

/// How requests to owners are sent, retried and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOptions {
    /// How long the first attempt waits for an answer; each later attempt
    /// waits twice as long as the one before (`resources.requests.ack_timeout`).
    pub ack_timeout_ms: u64,
    /// Attempts before the request is reported and the resource released
    /// (`resources.requests.max_attempts`).
    pub max_attempts: u32,
    /// Requests waiting for one owner's answer; past it, a policy's
    /// release happens at once, as without a listener
    /// (`resources.requests.max_pending_per_owner`).
    pub max_pending_per_owner: usize,
    /// Listeners per owner (`resources.requests.max_subscribers_per_owner`).
    pub max_subscribers_per_owner: usize,
}

impl RequestOptions {
    /// 30 s: long enough for an application to finish with the object,
    /// short enough that the policy's decision does not wait for hours.
    pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 30_000;
    /// 5: 30 s, 1, 2, 4 and 8 min; the resource goes some 15 min after
    /// the policy asked.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
    /// 1,000: a policy's run acts on at most a few thousand resources.
    pub const DEFAULT_MAX_PENDING_PER_OWNER: usize = 1_000;
    /// 4: one per instance of an application, with room for a restart.
    pub const DEFAULT_MAX_SUBSCRIBERS_PER_OWNER: usize = 4;
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            ack_timeout_ms: Self::DEFAULT_ACK_TIMEOUT_MS,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            max_pending_per_owner: Self::DEFAULT_MAX_PENDING_PER_OWNER,
            max_subscribers_per_owner: Self::DEFAULT_MAX_SUBSCRIBERS_PER_OWNER,
        }
    }
}

/// Listeners in all, whatever the owners: each holds a queue.
pub const MAX_SUBSCRIBERS: usize = 256;

/// Unanswered requests remembered for [`Registry::requests`].
pub const REPORTED: usize = 100;

/// The longest wait between attempts: the doubling stops here.
const MAX_WAIT_MS: u64 = 3_600_000;

/// What a policy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequestType {
    /// `release`: the application should let the object go.
    Release,
    /// `evict-cache`: the application should drop it from its cache.
    Evict,
    /// `close-resource` on a registered descriptor or socket: the
    /// application should close it (Linux lets no other process do so
    /// safely). Only ever asked: without a listening owner it is refused,
    /// and unanswered it is reported but the resource stays registered,
    /// since it is still open.
    Close,
}

/// What an owner is asked, as its listeners receive it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OwnerRequest {
    /// The request, for [`Registry::ack`].
    pub id: u64,
    /// Release, evict or close.
    #[serde(rename = "type")]
    pub kind_of_request: RequestType,
    /// The resource's handle.
    pub handle: u64,
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: &'static str,
    /// The cleanup policy that decided.
    pub policy: String,
    /// The plugin's reason.
    pub reason: String,
    /// Which attempt this is, from 1.
    pub attempt: u32,
}

/// A request waiting for its owner's answer, as [`Registry::requests`]
/// shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PendingRequest {
    /// The request as last sent.
    #[serde(flatten)]
    pub request: OwnerRequest,
    /// Its owner.
    pub owner: String,
    /// When the policy asked, ms since the epoch.
    pub asked_ms: TimestampMs,
    /// When it is sent again, or reported after the last attempt.
    pub due_ms: TimestampMs,
}

/// A request its owner never answered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unacknowledged {
    /// The request as last sent.
    #[serde(flatten)]
    pub request: OwnerRequest,
    /// Its owner.
    pub owner: String,
    /// When it was given up on, ms since the epoch.
    pub reported_ms: TimestampMs,
    /// What became of the resource: `released`, or why it was not.
    pub resource: String,
}

/// Counts since the registry was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    /// Requests made (first attempts).
    pub asked: u64,
    /// Deliveries a listener took, every attempt of every request.
    pub delivered: u64,
    /// Deliveries a listener could not take (its queue full): made good
    /// by the next attempt, or reported.
    pub dropped: u64,
    /// Answered: released.
    pub released: u64,
    /// Answered: refused.
    pub refused: u64,
    /// Never answered: reported, and the resource released.
    pub unacknowledged: u64,
    /// Releases done at once because the owner had
    /// [`RequestOptions::max_pending_per_owner`] requests waiting.
    pub overflowed: u64,
    /// Requests waiting now.
    pub pending: u64,
}

/// What [`Registry::requests`] answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestsReport {
    /// Waiting for an answer, oldest first.
    pub pending: Vec<PendingRequest>,
    /// The last [`REPORTED`] never answered, newest first.
    pub unacknowledged: Vec<Unacknowledged>,
    /// Counts.
    pub counts: RequestCounts,
}

/// What became of a policy's release ([`Registry::request_release`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// Released at once: nobody listens for its owner, or its owner has
    /// too many requests waiting (`overflowed`).
    Released {
        /// What was released.
        outcome: ReleaseOutcome,
        /// True if a listener was there but the owner's requests were at
        /// their bound.
        overflowed: bool,
    },
    /// Its owner was asked; the resource stays until it answers.
    Requested {
        /// The request.
        id: u64,
        /// Its owner.
        owner: String,
    },
    /// Its owner had already been asked about it.
    AlreadyRequested {
        /// The request.
        id: u64,
    },
}

/// An owner's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckOutcome {
    /// It let the object go: the resource is released.
    #[default]
    Released,
    /// It keeps the object: the resource stays.
    Refused,
}

/// What an answer did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Acked {
    /// The resource.
    pub handle: u64,
    /// True if the resource was released.
    pub released: bool,
    /// Why it was not, when the answer was `released` (others came to
    /// depend on it meanwhile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_released: Option<String>,
}

/// Why an answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No such request is waiting.
    #[error(
        "no request {id} is waiting for an answer (never sent, already answered, or its attempts ran out: `GET /api/v1/resources/requests` lists those)"
    )]
    Unknown {
        /// The request.
        id: u64,
    },
    /// The request is another owner's.
    #[error("request {id} was sent to owner `{owner}`, not to `{caller}`")]
    NotOwner {
        /// The request.
        id: u64,
        /// Its owner.
        owner: String,
        /// Who answered.
        caller: String,
    },
}

/// Why a listener was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The owner has as many listeners as it may.
    #[error(
        "owner `{owner}` has {limit} listeners already, the most one owner may have (`resources.requests.max_subscribers_per_owner`); close one first"
    )]
    TooManyForOwner {
        /// The owner.
        owner: String,
        /// The bound.
        limit: usize,
    },
    /// As many listeners as the registry takes.
    #[error("{limit} listeners are connected, the most warden takes; close some first")]
    TooMany {
        /// The bound.
        limit: usize,
    },
    /// Requests go to a named owner.
    #[error("an owner name is needed: resources registered without one are never asked")]
    NoOwner,
}

/// A listener: takes a request without blocking, true if it did.
pub type Listener = Arc<dyn Fn(&OwnerRequest) -> bool + Send + Sync>;

/// Listeners by owner.
#[derive(Default)]
pub(super) struct Listeners {
    next: u64,
    count: usize,
    by_owner: HashMap<String, Vec<(u64, Listener)>>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// Listeners, shared with the [`Subscription`]s that remove themselves.
pub(super) type SharedListeners = Arc<Mutex<Listeners>>;

fn lock(l: &Mutex<Listeners>) -> std::sync::MutexGuard<'_, Listeners> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

/// A listener's place: dropping it stops the requests.
#[derive(Debug)]
pub struct Subscription {
    listeners: Weak<Mutex<Listeners>>,
    owner: String,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(l) = self.listeners.upgrade() else {
            return;
        };
        let mut l = lock(&l);
        let Some(v) = l.by_owner.get_mut(&self.owner) else {
            return;
        };
        let before = v.len();
        v.retain(|(id, _)| *id != self.id);
        let gone = before - v.len();
        if v.is_empty() {
            l.by_owner.remove(&self.owner);
        }
        l.count -= gone;
    }
}

/// One request waiting.
#[derive(Debug)]
struct Waiting {
    seq: u64,
    /// A copy, not the entry's shared owner: the owners set drops an owner
    /// by counting the entries that share it.
    owner: String,
    request: OwnerRequest,
    asked_ms: TimestampMs,
    due_ms: TimestampMs,
}

/// The requests waiting, under the registry's lock.
#[derive(Debug, Default)]
pub(super) struct Requests {
    next_id: u64,
    waiting: BTreeMap<u64, Waiting>,
    by_seq: HashMap<u64, u64>,
    per_owner: HashMap<String, usize>,
    reported: VecDeque<Unacknowledged>,
}

impl Requests {
    /// The request waiting about entry `seq`.
    pub(super) fn about(&self, seq: u64) -> Option<u64> {
        self.by_seq.get(&seq).copied()
    }

    /// Forgets the request about `seq` (the resource went another way);
    /// true if there was one.
    pub(super) fn resolve(&mut self, seq: u64) -> bool {
        let Some(id) = self.by_seq.remove(&seq) else {
            return false;
        };
        if let Some(w) = self.waiting.remove(&id) {
            self.uncount(&w.owner);
        }
        true
    }

    fn take(&mut self, id: u64) -> Option<Waiting> {
        let w = self.waiting.remove(&id)?;
        self.by_seq.remove(&w.seq);
        self.uncount(&w.owner);
        Some(w)
    }

    fn uncount(&mut self, owner: &str) {
        if let Some(n) = self.per_owner.get_mut(owner) {
            *n -= 1;
            if *n == 0 {
                self.per_owner.remove(owner);
            }
        }
    }
}

/// Counters, kept outside the lock: deliveries happen outside it.
#[derive(Debug, Default)]
pub(super) struct Counters {
    asked: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    released: AtomicU64,
    refused: AtomicU64,
    unacknowledged: AtomicU64,
    overflowed: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// How long attempt `attempt` (from 1) waits for an answer.
fn wait_ms(opts: &RequestOptions, attempt: u32) -> i64 {
    let doubled = opts
        .ack_timeout_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(32));
    i64::try_from(doubled.min(MAX_WAIT_MS.max(opts.ack_timeout_ms))).unwrap_or(i64::MAX)
}

/// What a request is about, as a policy gives it.
#[derive(Debug, Clone, Copy)]
pub struct PolicyDecision<'a> {
    /// Release or evict.
    pub kind: RequestType,
    /// The policy.
    pub policy: &'a str,
    /// The plugin's reason.
    pub reason: &'a str,
    /// What to do when others depend on the resource: refuse (the default),
    /// or release them first — at once, without asking owners.
    pub mode: ReleaseMode,
}

impl Registry {
    /// Calls `listener` with each request to `owner` from now on, and at
    /// once with those already waiting, until the [`Subscription`] is
    /// dropped. The listener runs outside the registry's locks (it may
    /// call [`Registry::ack`]) and must not block: it returns false when
    /// it cannot take a request, which is counted as dropped and sent again
    /// at the next attempt.
    pub fn on_request(
        &self,
        owner: &str,
        listener: impl Fn(&OwnerRequest) -> bool + Send + Sync + 'static,
    ) -> Result<Subscription, SubscribeError> {
        if owner.is_empty() {
            return Err(SubscribeError::NoOwner);
        }
        let listener: Listener = Arc::new(listener);
        let id = {
            let mut l = lock(&self.listeners);
            if l.count >= MAX_SUBSCRIBERS {
                return Err(SubscribeError::TooMany {
                    limit: MAX_SUBSCRIBERS,
                });
            }
            let limit = self.opts.requests.max_subscribers_per_owner;
            if l.by_owner.get(owner).map_or(0, Vec::len) >= limit {
                return Err(SubscribeError::TooManyForOwner {
                    owner: owner.to_owned(),
                    limit,
                });
            }
            l.next += 1;
            l.count += 1;
            let id = l.next;
            l.by_owner
                .entry(owner.to_owned())
                .or_default()
                .push((id, Arc::clone(&listener)));
            id
        };
        let subscription = Subscription {
            listeners: Arc::downgrade(&self.listeners),
            owner: owner.to_owned(),
            id,
        };
        let waiting: Vec<OwnerRequest> = self
            .read()
            .requests
            .waiting
            .values()
            .filter(|w| w.owner == owner)
            .map(|w| w.request.clone())
            .collect();
        for r in &waiting {
            self.count_delivery(listener(r));
        }
        Ok(subscription)
    }

    /// Returns true if and only if someone listens for `owner`'s requests.
    pub fn has_listener(&self, owner: &str) -> bool {
        lock(&self.listeners).by_owner.contains_key(owner)
    }

    fn listeners_of(&self, owner: &str) -> Vec<Listener> {
        lock(&self.listeners)
            .by_owner
            .get(owner)
            .map(|v| v.iter().map(|(_, l)| Arc::clone(l)).collect())
            .unwrap_or_default()
    }

    fn count_delivery(&self, taken: bool) {
        bump(if taken {
            &self.counters.delivered
        } else {
            &self.counters.dropped
        });
    }

    fn deliver(&self, owner: &str, request: &OwnerRequest) {
        let listeners = self.listeners_of(owner);
        if listeners.is_empty() {
            bump(&self.counters.dropped);
        }
        for l in listeners {
            self.count_delivery(l(request));
        }
    }

    /// A cleanup policy's release of `handle` at `now_ms`: asks the owner
    /// if someone listens for it, else releases at once. While others
    /// depend on it, `decision.mode` says: [`ReleaseMode::Refuse`] refuses,
    /// [`ReleaseMode::Cascade`] releases them first, at once (asking each
    /// owner in turn could leave a dependent without what it depends on).
    pub fn request_release(
        &self,
        handle: u64,
        decision: PolicyDecision<'_>,
        now_ms: TimestampMs,
    ) -> Result<Asked, ReleaseError> {
        let mut g = self.write();
        let seq = self
            .live_seq(&g, handle)
            .ok_or(ReleaseError::Unknown { handle })?;
        if let Some(id) = g.requests.about(seq) {
            return Ok(Asked::AlreadyRequested { id });
        }
        let (owner, name, kind) = match g.entries.get(seq) {
            Some(e) => (e.owner.to_string(), e.text.name().to_owned(), e.kind),
            None => return Err(ReleaseError::Unknown { handle }),
        };
        let listening = !owner.is_empty() && self.has_listener(&owner);
        let full = g.requests.per_owner.get(&owner).copied().unwrap_or(0)
            >= self.opts.requests.max_pending_per_owner;
        if decision.kind == RequestType::Close {
            // Nothing to fall back on: forgetting the entry would not close
            // the descriptor, only hide it. With dependents, the owner is
            // asked all the same; its own release then meets them.
            let why = if owner.is_empty() {
                Some("it has no owner to ask, and only the process holding a descriptor can close it".to_owned())
            } else if !listening {
                Some(format!(
                    "its owner `{owner}` does not listen for requests (`GET /api/v1/resources/events?owner={owner}`), and only the process holding a descriptor can close it"
                ))
            } else if full {
                Some(format!(
                    "its owner `{owner}` has too many requests waiting; asked again on the policy's next run"
                ))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ReleaseError::NotAsked { handle, why });
            }
        } else if !listening || full || self.has_dependents(&g, seq) {
            let actor = Actor::Policy(decision.policy.to_owned());
            let outcome =
                self.release_locked(&mut g, seq, handle, &actor, decision.mode, now_ms)?;
            if listening && full {
                bump(&self.counters.overflowed);
            }
            return Ok(Asked::Released {
                outcome,
                overflowed: listening && full,
            });
        }
        let r = &mut g.requests;
        r.next_id += 1;
        let id = r.next_id;
        let request = OwnerRequest {
            id,
            kind_of_request: decision.kind,
            handle,
            name: name.clone(),
            kind: kind.name(),
            policy: decision.policy.to_owned(),
            reason: decision.reason.to_owned(),
            attempt: 1,
        };
        r.by_seq.insert(seq, id);
        *r.per_owner.entry(owner.clone()).or_default() += 1;
        r.waiting.insert(
            id,
            Waiting {
                seq,
                owner: owner.clone(),
                request: request.clone(),
                asked_ms: now_ms,
                due_ms: now_ms.saturating_add(wait_ms(&self.opts.requests, 1)),
            },
        );
        g.trail.push(Event {
            at_ms: now_ms,
            seq,
            name: name.into_boxed_str(),
            action: Action::ReleaseRequested,
            actor: Arc::from(Actor::Policy(decision.policy.to_owned()).to_string()),
            other: 0,
        });
        let pending = g.pending_len();
        drop(g);
        self.flush_if_piled_up(pending);
        bump(&self.counters.asked);
        self.deliver(&owner, &request);
        Ok(Asked::Requested { id, owner })
    }

    /// `owner`'s answer to request `id` at `now_ms`: `Released` releases
    /// the resource (as the policy's release: a later call about it is told
    /// which policy), `Refused` keeps it (in the audit trail by the owner).
    pub fn ack(
        &self,
        id: u64,
        owner: &str,
        outcome: AckOutcome,
        now_ms: TimestampMs,
    ) -> Result<Acked, AckError> {
        let mut g = self.write();
        match g.requests.waiting.get(&id) {
            None => return Err(AckError::Unknown { id }),
            Some(w) if w.owner != owner => {
                return Err(AckError::NotOwner {
                    id,
                    owner: w.owner.clone(),
                    caller: owner.to_owned(),
                });
            }
            Some(_) => {}
        }
        let w = g.requests.take(id).ok_or(AckError::Unknown { id })?;
        let handle = w.request.handle;
        let acked = match outcome {
            AckOutcome::Released => {
                bump(&self.counters.released);
                let actor = Actor::Policy(w.request.policy.clone());
                match self.release_locked(
                    &mut g,
                    w.seq,
                    handle,
                    &actor,
                    ReleaseMode::Refuse,
                    now_ms,
                ) {
                    Ok(_) => Acked {
                        handle,
                        released: true,
                        not_released: None,
                    },
                    Err(e) => Acked {
                        handle,
                        released: false,
                        not_released: Some(e.to_string()),
                    },
                }
            }
            AckOutcome::Refused => {
                bump(&self.counters.refused);
                g.trail.push(Event {
                    at_ms: now_ms,
                    seq: w.seq,
                    name: w.request.name.into_boxed_str(),
                    action: Action::ReleaseRefused,
                    actor: Arc::from(owner),
                    other: 0,
                });
                Acked {
                    handle,
                    released: false,
                    not_released: None,
                }
            }
        };
        Ok(acked)
    }

    /// Sends again, at `now_ms`, the requests whose attempt went
    /// unanswered, and reports those past their last attempt: released as
    /// their policy decided, in the audit trail and in
    /// [`Registry::requests`]. Returns how many were reported.
    pub fn retry_requests(&self, now_ms: TimestampMs) -> usize {
        if self.read().requests.waiting.is_empty() {
            return 0;
        }
        let mut g = self.write();
        let due: Vec<u64> = g
            .requests
            .waiting
            .iter()
            .filter(|(_, w)| w.due_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        let mut resend = Vec::new();
        let mut reported = 0;
        for id in due {
            let last = g
                .requests
                .waiting
                .get(&id)
                .is_some_and(|w| w.request.attempt >= self.opts.requests.max_attempts);
            if !last {
                if let Some(w) = g.requests.waiting.get_mut(&id) {
                    w.request.attempt += 1;
                    w.due_ms =
                        now_ms.saturating_add(wait_ms(&self.opts.requests, w.request.attempt));
                    resend.push((w.owner.clone(), w.request.clone()));
                }
                continue;
            }
            let Some(w) = g.requests.take(id) else {
                continue;
            };
            self.report(&mut g, w, now_ms);
            reported += 1;
        }
        drop(g);
        for (owner, request) in resend {
            self.deliver(&owner, &request);
        }
        reported
    }

    fn report(&self, g: &mut Inner, w: Waiting, now_ms: TimestampMs) {
        bump(&self.counters.unacknowledged);
        g.trail.push(Event {
            at_ms: now_ms,
            seq: w.seq,
            name: Box::from(w.request.name.as_str()),
            action: Action::RequestUnacknowledged,
            actor: Arc::from(Actor::Warden.to_string()),
            other: 0,
        });
        let actor = Actor::Policy(w.request.policy.clone());
        let handle = w.request.handle;
        let resource = if w.request.kind_of_request == RequestType::Close {
            "kept: it is still open, and only its owner can close it".to_owned()
        } else {
            match self.release_locked(g, w.seq, handle, &actor, ReleaseMode::Refuse, now_ms) {
                Ok(_) => "released".to_owned(),
                Err(e) => format!("not released: {e}"),
            }
        };
        if g.requests.reported.len() >= REPORTED {
            g.requests.reported.pop_front();
        }
        g.requests.reported.push_back(Unacknowledged {
            request: w.request,
            owner: w.owner,
            reported_ms: now_ms,
            resource,
        });
    }

    /// The requests waiting (of `owner` only, if given; at most `limit`),
    /// the last ones never answered, and the counts.
    pub fn requests(&self, owner: Option<&str>, limit: usize) -> RequestsReport {
        let g = self.read();
        let mine = |o: &str| owner.is_none_or(|x| x == o);
        RequestsReport {
            pending: g
                .requests
                .waiting
                .values()
                .filter(|w| mine(&w.owner))
                .take(limit)
                .map(|w| PendingRequest {
                    request: w.request.clone(),
                    owner: w.owner.clone(),
                    asked_ms: w.asked_ms,
                    due_ms: w.due_ms,
                })
                .collect(),
            unacknowledged: g
                .requests
                .reported
                .iter()
                .rev()
                .filter(|u| mine(&u.owner))
                .take(limit)
                .cloned()
                .collect(),
            counts: self.request_counts_locked(&g),
        }
    }

    /// The counts of requests, for `/metrics`.
    pub fn request_counts(&self) -> RequestCounts {
        self.request_counts_locked(&self.read())
    }

    fn request_counts_locked(&self, g: &Inner) -> RequestCounts {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestCounts {
            asked: get(&c.asked),
            delivered: get(&c.delivered),
            dropped: get(&c.dropped),
            released: get(&c.released),
            refused: get(&c.refused),
            unacknowledged: get(&c.unacknowledged),
            overflowed: get(&c.overflowed),
            pending: g.requests.waiting.len() as u64,
        }
    }
}
