//! Dependencies between registered resources (issue 16): a resource may
//! depend on others, given at registration
//! ([`Registry::register_with_dependencies`]) or added and removed later
//! ([`Registry::add_dependency`], [`Registry::remove_dependency`]).
//!
//! Cycles are accepted, since an application may model mutual references,
//! and reported ([`Registry::cycles`], [`super::ScanReport::cycles`]).
//!
//! A resource others depend on is not released from under them: a release
//! either refuses, naming the live dependents, or cascades, releasing them
//! first, dependents before what they depend on
//! ([`Registry::release_with`]). The older release functions refuse.

use std::sync::Arc;

use warden_core::records::TimestampMs;

use super::graph::Way;
use super::{Action, Actor, Event, Full, Inner, Pending, Registration, Registry};

/// What a release does about the resources that depend on the one asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReleaseMode {
    /// Refuses while others depend on it ([`ReleaseError::HasDependents`]):
    /// the default, since a cascade may release other owners' resources.
    #[default]
    Refuse,
    /// Releases its dependents first, transitively, dependents before what
    /// they depend on; each is audited as [`Action::CascadeRelease`] by the
    /// same actor.
    Cascade,
}

/// A resource a cascade released.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReleasedResource {
    /// Its handle.
    pub handle: u64,
    /// Its size in bytes.
    pub size_bytes: u64,
}

/// What [`Registry::release_with`] released.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReleaseOutcome {
    /// The size of the resource asked for.
    pub size_bytes: u64,
    /// The dependents released before it, in the order they were released.
    pub cascaded: Vec<ReleasedResource>,
    /// The cycles the cascade met, each released as one group (members in
    /// registration order; a group may include the resource asked for).
    pub cycles: Vec<Vec<u64>>,
}

/// Why a release did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The handle is not registered.
    #[error("resource {handle} is not registered (never registered, or already released)")]
    Unknown {
        /// The handle.
        handle: u64,
    },
    /// Others depend on it and the mode is [`ReleaseMode::Refuse`].
    #[error(
        "resource {handle} has {} live dependents ({}); release them first, remove their dependencies on it, or release with cascade to release them too",
        dependents.len(),
        list(dependents)
    )]
    HasDependents {
        /// The handle.
        handle: u64,
        /// The resources depending on it directly, in registration order.
        dependents: Vec<u64>,
    },
    /// A `close` could not be asked of the owner: only the process holding
    /// a descriptor can close it, so without the owner nothing is done.
    #[error("resource {handle} was not closed: {why}")]
    NotAsked {
        /// The handle.
        handle: u64,
        /// Why the owner could not be asked.
        why: String,
    },
}

/// Why a dependency was not added, removed or looked up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DependencyError {
    /// The resource whose dependencies were asked about is not registered.
    #[error("resource {handle} is not registered (never registered, or already released)")]
    UnknownResource {
        /// Its handle.
        handle: u64,
    },
    /// The resource to depend on is not registered.
    #[error(
        "cannot depend on resource {handle}: it is not registered (never registered, or already released)"
    )]
    UnknownDependency {
        /// Its handle.
        handle: u64,
    },
    /// The resource depends on as many as it may.
    #[error(
        "resource {handle} already depends on {limit} resources, the most one may (`resources.max_dependencies`); remove some of its dependencies, or make it depend on one resource that stands for a group"
    )]
    TooManyDependencies {
        /// Its handle.
        handle: u64,
        /// The bound.
        limit: usize,
    },
    /// A registration names more dependencies than a resource may have.
    #[error(
        "a registration names {given} dependencies, more than the {limit} one resource may have (`resources.max_dependencies`)"
    )]
    TooManyAtRegistration {
        /// Distinct handles named.
        given: usize,
        /// The bound.
        limit: usize,
    },
    /// The registry holds as many dependencies as it may.
    #[error(
        "the registry holds {edges} dependencies between resources, and {adding} more would pass its `resources.max_edges` of {limit}; remove or release some, or raise the limit"
    )]
    TooManyEdges {
        /// Dependencies held.
        edges: usize,
        /// Dependencies this would add.
        adding: usize,
        /// The bound.
        limit: usize,
    },
}

/// Why a registration with dependencies was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The registry is full.
    #[error(transparent)]
    Full(#[from] Full),
    /// A dependency named cannot be made.
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

fn list(handles: &[u64]) -> String {
    const SHOWN: usize = 20;
    let mut s = handles
        .iter()
        .take(SHOWN)
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if handles.len() > SHOWN {
        s.push_str(&format!(", and {} more", handles.len() - SHOWN));
    }
    s
}

impl Registry {
    pub(super) fn live_seq(&self, g: &Inner, handle: u64) -> Option<u64> {
        self.handles
            .decode(handle)
            .filter(|s| g.entries.get(*s).is_some())
    }

    fn encode_all(&self, seqs: impl IntoIterator<Item = u64>) -> Vec<u64> {
        seqs.into_iter().map(|s| self.handles.encode(s)).collect()
    }

    /// [`Registry::register`] of a resource that depends on the resources
    /// `depends_on` names (repeats count once); refused, naming the handle,
    /// if one is not registered, or if they pass a bound
    /// ([`super::RegistryOptions::max_dependencies`], `max_edges`).
    pub fn register_with_dependencies(
        &self,
        reg: Registration,
        depends_on: &[u64],
        now_ms: TimestampMs,
    ) -> Result<u64, RegisterError> {
        self.register_checked(reg, now_ms, |g| self.check_dependencies(g, depends_on))
    }

    /// The sequence numbers of the resources `depends_on` names, in the
    /// order given (so that `dependencies` answers as asked), once each;
    /// refused as [`Registry::register_with_dependencies`] says.
    pub(super) fn check_dependencies(
        &self,
        g: &Inner,
        depends_on: &[u64],
    ) -> Result<Vec<u64>, RegisterError> {
        if depends_on.is_empty() {
            return Ok(Vec::new());
        }
        let mut handles = depends_on.to_vec();
        handles.sort_unstable();
        handles.dedup();
        if handles.len() > self.opts.max_dependencies {
            return Err(DependencyError::TooManyAtRegistration {
                given: handles.len(),
                limit: self.opts.max_dependencies,
            }
            .into());
        }
        self.check_edges(g, handles.len())?;
        let mut seqs = Vec::with_capacity(handles.len());
        for &h in depends_on {
            let s = self
                .live_seq(g, h)
                .ok_or(DependencyError::UnknownDependency { handle: h })?;
            if !seqs.contains(&s) {
                seqs.push(s);
            }
        }
        Ok(seqs)
    }

    fn check_edges(&self, g: &Inner, adding: usize) -> Result<(), DependencyError> {
        let edges = g.graph.edges();
        if edges.saturating_add(adding) > self.opts.max_edges {
            return Err(DependencyError::TooManyEdges {
                edges,
                adding,
                limit: self.opts.max_edges,
            });
        }
        Ok(())
    }

    /// Makes `handle` depend on `on`, by `actor` at `now_ms` (in the audit
    /// trail); true if added, false if it already did. A resource may
    /// depend on itself or close a cycle: that is reported by
    /// [`Registry::cycles`], not refused.
    pub fn add_dependency(
        &self,
        handle: u64,
        on: u64,
        actor: &Actor,
        now_ms: TimestampMs,
    ) -> Result<bool, DependencyError> {
        self.change_dependency(handle, on, true, actor, now_ms)
    }

    /// Makes `handle` no longer depend on `on`; true if it did.
    pub fn remove_dependency(
        &self,
        handle: u64,
        on: u64,
        actor: &Actor,
        now_ms: TimestampMs,
    ) -> Result<bool, DependencyError> {
        self.change_dependency(handle, on, false, actor, now_ms)
    }

    fn change_dependency(
        &self,
        handle: u64,
        on: u64,
        add: bool,
        actor: &Actor,
        now_ms: TimestampMs,
    ) -> Result<bool, DependencyError> {
        let mut g = self.write();
        let seq = self
            .live_seq(&g, handle)
            .ok_or(DependencyError::UnknownResource { handle })?;
        let on_seq = self
            .live_seq(&g, on)
            .ok_or(DependencyError::UnknownDependency { handle: on })?;
        let changed = if add {
            if g.graph.dependencies(seq).contains(&on_seq) {
                return Ok(false);
            }
            if g.graph.dependencies(seq).len() >= self.opts.max_dependencies {
                return Err(DependencyError::TooManyDependencies {
                    handle,
                    limit: self.opts.max_dependencies,
                });
            }
            self.check_edges(&g, 1)?;
            g.graph.add(seq, on_seq)
        } else {
            g.graph.remove(seq, on_seq)
        };
        if changed {
            let name = g.entries.get(seq).map(|e| Box::from(e.text.name()));
            g.trail.push(Event {
                at_ms: now_ms,
                seq,
                name: name.unwrap_or_default(),
                action: if add {
                    Action::DependencyAdded
                } else {
                    Action::DependencyRemoved
                },
                actor: Arc::from(actor.to_string()),
                other: on_seq,
            });
            g.log(Pending::Dep {
                seq,
                on: on_seq,
                added: add,
            });
        }
        let pending = g.pending_len();
        drop(g);
        self.flush_if_piled_up(pending);
        Ok(changed)
    }

    /// What `handle` depends on, in the order the dependencies were made.
    pub fn dependencies(&self, handle: u64) -> Result<Vec<u64>, DependencyError> {
        self.neighbours(handle, |g, s| g.graph.dependencies(s).to_vec())
    }

    /// What depends on `handle`, in the order the dependencies were made.
    pub fn dependents(&self, handle: u64) -> Result<Vec<u64>, DependencyError> {
        self.neighbours(handle, |g, s| g.graph.dependents(s).to_vec())
    }

    /// Everything `handle` depends on, directly or through others, nearest
    /// first; itself only if it is in a cycle.
    pub fn dependencies_transitive(&self, handle: u64) -> Result<Vec<u64>, DependencyError> {
        self.neighbours(handle, |g, s| g.graph.reach(s, Way::Dependencies))
    }

    /// Everything that depends on `handle`, directly or through others,
    /// nearest first: what a cascading release of it would release too.
    pub fn dependents_transitive(&self, handle: u64) -> Result<Vec<u64>, DependencyError> {
        self.neighbours(handle, |g, s| g.graph.reach(s, Way::Dependents))
    }

    fn neighbours(
        &self,
        handle: u64,
        f: impl FnOnce(&Inner, u64) -> Vec<u64>,
    ) -> Result<Vec<u64>, DependencyError> {
        let g = self.read();
        let seq = self
            .live_seq(&g, handle)
            .ok_or(DependencyError::UnknownResource { handle })?;
        let seqs = f(&g, seq);
        drop(g);
        Ok(self.encode_all(seqs))
    }

    /// The cycles among the dependencies: each group of resources that
    /// depend on one another, and each resource that depends on itself;
    /// members in registration order. Costs the resources with
    /// dependencies and their edges, not the whole registry.
    pub fn cycles(&self) -> Vec<Vec<u64>> {
        let cycles = self.read().graph.cycles();
        cycles
            .iter()
            .map(|c| self.encode_all(c.iter().copied()))
            .collect()
    }

    /// Releases `handle` on `actor`'s word at `now_ms`; what happens to the
    /// resources that depend on it is `mode`'s. With
    /// [`ReleaseMode::Cascade`] they are released first, dependents before
    /// what they depend on, whoever owns them (the API should ask for
    /// `force` when owners differ: [`Registry::dependents_transitive`]
    /// tells beforehand); a cycle is released as one group and reported.
    /// All under one lock: nobody sees a dependent without what it depends
    /// on.
    pub fn release_with(
        &self,
        handle: u64,
        actor: &Actor,
        mode: ReleaseMode,
        now_ms: TimestampMs,
    ) -> Result<ReleaseOutcome, ReleaseError> {
        let mut g = self.write();
        let seq = self
            .live_seq(&g, handle)
            .ok_or(ReleaseError::Unknown { handle })?;
        let outcome = self.release_locked(&mut g, seq, handle, actor, mode, now_ms)?;
        let pending = g.pending_len();
        drop(g);
        self.flush_if_piled_up(pending);
        Ok(outcome)
    }

    /// Returns true if and only if a resource other than `seq` itself
    /// depends on `seq`.
    pub(super) fn has_dependents(&self, g: &Inner, seq: u64) -> bool {
        g.graph.dependents(seq).iter().any(|d| *d != seq)
    }

    /// [`Registry::release_with`] of live entry `seq` (`handle`), under
    /// the caller's lock.
    pub(super) fn release_locked(
        &self,
        g: &mut Inner,
        seq: u64,
        handle: u64,
        actor: &Actor,
        mode: ReleaseMode,
        now_ms: TimestampMs,
    ) -> Result<ReleaseOutcome, ReleaseError> {
        let owner = g
            .entries
            .get(seq)
            .map(|e| Arc::clone(&e.owner))
            .unwrap_or_default();
        // One depending on itself does not hold itself up.
        let mut direct: Vec<u64> = g
            .graph
            .dependents(seq)
            .iter()
            .copied()
            .filter(|d| *d != seq)
            .collect();
        let mut outcome = ReleaseOutcome::default();
        if !direct.is_empty() {
            if mode == ReleaseMode::Refuse {
                direct.sort_unstable();
                return Err(ReleaseError::HasDependents {
                    handle,
                    dependents: self.encode_all(direct),
                });
            }
            let groups = g.graph.components(&[seq], Way::Dependents);
            let cascade_actor: Arc<str> = Arc::from(actor.to_string());
            let policy = match actor {
                Actor::Policy(p) => Some(p.as_str()),
                _ => None,
            };
            for mut group in groups {
                let in_cycle =
                    group.len() > 1 || g.graph.dependencies(group[0]).contains(&group[0]);
                group.sort_unstable();
                if in_cycle {
                    outcome.cycles.push(self.encode_all(group.iter().copied()));
                }
                for s in group {
                    if s == seq {
                        continue;
                    }
                    if let Some(size_bytes) = g.release_one(
                        s,
                        Action::CascadeRelease,
                        &cascade_actor,
                        policy,
                        seq,
                        now_ms,
                    ) {
                        outcome.cascaded.push(ReleasedResource {
                            handle: self.handles.encode(s),
                            size_bytes,
                        });
                    }
                }
            }
        }
        let action = match actor {
            Actor::Policy(_) => Action::PolicyRelease,
            Actor::Caller(c) if !c.is_empty() && !owner.is_empty() && **c != *owner => {
                Action::ForcedRelease
            }
            Actor::Caller(_) | Actor::Warden => Action::Release,
        };
        // The owner's own name is shared rather than copied.
        let who: Arc<str> = match actor {
            Actor::Caller(c) if !c.is_empty() && **c == *owner => Arc::clone(&owner),
            other => Arc::from(other.to_string()),
        };
        drop(owner);
        let policy = match actor {
            Actor::Policy(p) => Some(p.as_str()),
            _ => None,
        };
        outcome.size_bytes = g
            .release_one(seq, action, &who, policy, 0, now_ms)
            .unwrap_or_default();
        Ok(outcome)
    }
}
