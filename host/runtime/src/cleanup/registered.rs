//! Cleanup of resources applications registered: the host shows a cleanup
//! policy the registered resources of the kinds its `scope.kinds` names, and
//! releases those the plugin decides to `release` (or `evict`). Releasing
//! forgets the handle; the application that asks about it again is told
//! which policy released it. An owner that listens for requests is asked
//! instead, and the resource goes when it answers (or never does). The same safety belt as for files applies: the
//! cap on actions per run, and `dry_run`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use crate::cleanup::{ActsOn, Cap, Item, MAX_NOTICES, Outcome, Run, notice, over_cap};
use warden_core::records::{CleanupAction, CleanupPlan, ResourceFilter, ResourceKind, ResourceSet};
use warden_resources::Registry;
use warden_resources::registry::{Asked, PolicyDecision, ReleaseError, ReleaseMode, RequestType};

/// The registered resources a policy with `kinds` in scope may act on;
/// empty when `kinds` is.
pub fn candidates(registry: &Registry, kinds: &[ResourceKind]) -> ResourceSet {
    if kinds.is_empty() {
        return ResourceSet::default();
    }
    registry.list(&ResourceFilter {
        kinds: kinds.to_vec(),
        name_prefix: None,
        limit: Some(crate::cleanup::walk::MAX_CANDIDATES as u32),
    })
}

/// Carries out `plan` over the registered `candidates`.
pub fn execute(
    policy: &str,
    registry: &Registry,
    candidates: &ResourceSet,
    plan: &CleanupPlan,
    cap: Option<Cap>,
    dry_run: bool,
    on_dependents: ReleaseMode,
) -> Run {
    let started = Instant::now();
    let mut run = Run::begin(
        policy,
        ActsOn::Registered,
        dry_run,
        candidates.len(),
        plan.actions.len(),
    );
    if let Some(why) = over_cap(policy, cap, plan, candidates.len()) {
        run.cap_exceeded = Some(why);
        return run.end(started);
    }
    let now = warden_core::clock::now_ms();
    let mut notices = 0usize;
    for (i, (action, _)) in plan.actions.iter().enumerate() {
        let reason: Arc<str> = plan.shared_reason(i).cloned().unwrap_or_else(|| "".into());
        let (verb, target) = match action {
            CleanupAction::Release(t) => ("release", Some(*t)),
            CleanupAction::EvictCache(t) => ("evict", Some(*t)),
            CleanupAction::DeletePath(t) => ("delete", Some(*t)),
            CleanupAction::CloseResource(t) => ("close", Some(*t)),
            CleanupAction::KillProcess { target, .. } => ("kill", Some(*target)),
            CleanupAction::Notify(m) => {
                notices += 1;
                if notices <= MAX_NOTICES {
                    tracing::info!(policy, message = %notice(m), "cleanup notice");
                }
                ("notify", None)
            }
        };
        let Some(t) = target else {
            run.items.push(Item {
                action: Cow::Borrowed(verb),
                target: None,
                reason,
                outcome: Outcome::Skipped {
                    why: "a notice, logged".into(),
                },
                attempts: 0,
            });
            continue;
        };
        let index = t as usize;
        let (Some(handle), Some(name)) = (candidates.handle(index), candidates.name(index)) else {
            tracing::warn!(
                policy,
                target = t,
                "refused: not one of the candidates shown"
            );
            run.items.push(Item {
                action: Cow::Borrowed(verb),
                target: None,
                reason,
                outcome: Outcome::Refused {
                    why: format!(
                        "candidate {t} does not exist; only the candidates shown may be acted on"
                    ),
                },
                attempts: 0,
            });
            continue;
        };
        let target = Some(format!("{handle}:{name}"));
        let descriptor = matches!(
            candidates.kind(index),
            Some(ResourceKind::FileDescriptor | ResourceKind::Socket)
        );
        let outcome = if verb == "close" && !descriptor {
            Outcome::Refused {
                why: "`close` is for registered descriptors and sockets; plan `release` for other resources".into(),
            }
        } else if !matches!(verb, "release" | "evict" | "close") {
            tracing::warn!(
                policy,
                handle,
                "refused: registered resources are released, not {verb}d by the host"
            );
            Outcome::Refused {
                why: format!(
                    "`{verb}` on a registered resource: the host only releases them (plan `release`, `evict`, or `close` for a descriptor); the application owns the object itself"
                ),
            }
        } else if dry_run {
            let bytes = candidates.size_bytes(index).unwrap_or(0);
            run.bytes_freed += bytes;
            // Every action of a dry run is logged: the history keeps only
            // the first `CLEANUP_ITEMS` of a run.
            tracing::info!(policy, target = target.as_deref().unwrap_or(""), reason = %reason, bytes, "dry run: would {verb}");
            Outcome::WouldRelease { bytes }
        } else {
            // A resource others still depend on stays until they go, unless
            // the policy says `on_dependents: cascade`. An owner that
            // listens is asked first (see `warden_resources::registry::requests`).
            let decision = PolicyDecision {
                kind: match verb {
                    "evict" => RequestType::Evict,
                    "close" => RequestType::Close,
                    _ => RequestType::Release,
                },
                policy,
                reason: &reason,
                mode: on_dependents,
            };
            match registry.request_release(handle, decision, now) {
                Ok(Asked::Released { outcome, .. }) => {
                    let cascaded: u64 = outcome.cascaded.iter().map(|c| c.size_bytes).sum();
                    if !outcome.cascaded.is_empty() {
                        tracing::info!(
                            policy,
                            handle,
                            dependents = outcome.cascaded.len(),
                            bytes = cascaded,
                            "released with its dependents (on_dependents: cascade)"
                        );
                    }
                    let bytes = outcome.size_bytes + cascaded;
                    run.bytes_freed += bytes;
                    Outcome::Released { bytes }
                }
                Ok(Asked::Requested { id, owner }) => Outcome::Skipped {
                    why: if verb == "close" {
                        format!(
                            "its owner `{owner}` listens: asked to close it (request {id}); it is released when the owner answers, and reported but kept if it never does"
                        )
                    } else {
                        format!(
                            "its owner `{owner}` listens: asked to {verb} it (request {id}); it is released when the owner answers, or once the request's attempts run out"
                        )
                    },
                },
                Ok(Asked::AlreadyRequested { id }) => Outcome::Skipped {
                    why: format!("its owner was already asked to release it (request {id})"),
                },
                Err(e @ ReleaseError::HasDependents { .. }) => {
                    Outcome::Skipped { why: e.to_string() }
                }
                Err(e @ ReleaseError::NotAsked { .. }) => Outcome::Refused { why: e.to_string() },
                Err(_) => Outcome::Skipped {
                    why: "already released by its application".into(),
                },
            }
        };
        run.items.push(Item {
            action: Cow::Borrowed(verb),
            target,
            reason,
            outcome,
            attempts: u32::from(matches!(verb, "release" | "evict" | "close")),
        });
    }
    run.end(started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::records::ResourceKind;
    use warden_resources::Registration;
    use warden_resources::registry::Lookup;

    fn registry(n: usize) -> Registry {
        let r = Registry::default();
        for i in 0..n {
            r.register(
                Registration {
                    kind: ResourceKind::AppObject,
                    name: format!("cache/{i}"),
                    owner: "svc".into(),
                    size_bytes: 100,
                    pid: None,
                    labels: vec![],
                    ttl_ms: None,
                },
                0,
            )
            .unwrap();
        }
        r
    }

    fn plan(actions: Vec<CleanupAction>) -> CleanupPlan {
        CleanupPlan {
            reasons: vec!["why".into()],
            actions: actions.into_iter().map(|a| (a, 0)).collect(),
        }
    }

    #[test]
    fn releases_what_the_plan_releases_and_refuses_the_rest() {
        let r = registry(3);
        let set = candidates(&r, &[ResourceKind::AppObject]);
        assert_eq!(set.len(), 3);
        let run = execute(
            "leases",
            &r,
            &set,
            &plan(vec![
                CleanupAction::Release(0),
                CleanupAction::DeletePath(1),
                CleanupAction::Release(9),
            ]),
            None,
            false,
            ReleaseMode::Refuse,
        );
        assert_eq!(run.counts(), [1, 0, 2, 0, 0]);
        assert_eq!(run.bytes_freed, 100);
        let (first, second) = (set.handle(0).unwrap(), set.handle(1).unwrap());
        assert!(matches!(r.lookup(first), Lookup::Released(ref x) if x.by_policy == "leases"));
        assert!(matches!(r.lookup(second), Lookup::Live(_)));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn on_dependents_refuses_or_cascades_a_release_others_depend_on() {
        for (mode, freed, left) in [(ReleaseMode::Refuse, 0, 2), (ReleaseMode::Cascade, 30, 0)] {
            let r = Registry::default();
            let reg = |name: &str, size| warden_resources::Registration {
                kind: ResourceKind::AppObject,
                name: name.into(),
                owner: "svc".into(),
                size_bytes: size,
                pid: None,
                labels: Vec::new(),
                ttl_ms: None,
            };
            let db = r.register(reg("db", 10), 1).unwrap();
            r.register_with_dependencies(reg("conn", 20), &[db], 1)
                .unwrap();
            let set = candidates(&r, &[ResourceKind::AppObject]);
            let run = execute(
                "janitor",
                &r,
                &set,
                &plan(vec![CleanupAction::Release(0)]),
                None,
                false,
                mode,
            );
            assert_eq!((run.bytes_freed, r.len()), (freed, left), "{mode:?}");
            if mode == ReleaseMode::Refuse {
                assert!(
                    matches!(&run.items[0].outcome, Outcome::Skipped { why } if why.contains("live dependents")),
                    "{:?}",
                    run.items
                );
            }
        }
    }

    #[test]
    fn an_owner_that_listens_is_asked_and_the_resource_stays_until_it_answers() {
        let r = registry(2);
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&asked);
        let _sub = r
            .on_request("svc", move |q| {
                sink.lock()
                    .unwrap()
                    .push((q.handle, q.kind_of_request, q.reason.clone()));
                true
            })
            .unwrap();
        let set = candidates(&r, &[ResourceKind::AppObject]);
        let run = execute(
            "leases",
            &r,
            &set,
            &plan(vec![CleanupAction::EvictCache(0)]),
            None,
            false,
            ReleaseMode::Refuse,
        );
        let first = set.handle(0).unwrap();
        assert_eq!(
            *asked.lock().unwrap(),
            [(first, RequestType::Evict, "why".to_owned())]
        );
        assert!(matches!(r.lookup(first), Lookup::Live(ref v) if v.release_requested.is_some()));
        assert_eq!(run.bytes_freed, 0);
        assert!(
            matches!(&run.items[0].outcome, Outcome::Skipped { why } if why.contains("owner `svc`")),
            "{:?}",
            run.items
        );
    }

    #[test]
    fn a_close_goes_to_a_listening_owner_of_a_descriptor_and_is_refused_otherwise() {
        let r = registry(1);
        let socket = r
            .register(
                warden_resources::Registration {
                    kind: ResourceKind::Socket,
                    name: "conn/1".into(),
                    owner: "svc".into(),
                    size_bytes: 0,
                    pid: None,
                    labels: vec![],
                    ttl_ms: None,
                },
                0,
            )
            .unwrap();
        let set = candidates(&r, &[ResourceKind::AppObject, ResourceKind::Socket]);
        let at = |h| (0..set.len()).find(|&i| set.handle(i) == Some(h)).unwrap() as u32;
        let object = (0..set.len())
            .find(|&i| set.handle(i) != Some(socket))
            .unwrap() as u32;
        let run = |r: &Registry| {
            execute(
                "sockets",
                r,
                &set,
                &plan(vec![
                    CleanupAction::CloseResource(object),
                    CleanupAction::CloseResource(at(socket)),
                ]),
                None,
                false,
                ReleaseMode::Refuse,
            )
        };
        let why = |run: &Run, i: usize| match &run.items[i].outcome {
            Outcome::Refused { why } | Outcome::Skipped { why } => why.clone(),
            other => format!("{other:?}"),
        };
        // Nobody listens: both refused, nothing released.
        let first = run(&r);
        assert!(
            why(&first, 0).contains("descriptors and sockets"),
            "{}",
            why(&first, 0)
        );
        assert!(
            why(&first, 1).contains("does not listen"),
            "{}",
            why(&first, 1)
        );
        assert!(matches!(first.items[1].outcome, Outcome::Refused { .. }));
        assert_eq!(r.len(), 2);
        // The owner listens: asked to close the socket, which stays until
        // it answers.
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&asked);
        let _sub = r
            .on_request("svc", move |q| {
                sink.lock().unwrap().push((q.handle, q.kind_of_request));
                true
            })
            .unwrap();
        let second = run(&r);
        assert_eq!(*asked.lock().unwrap(), [(socket, RequestType::Close)]);
        assert!(
            why(&second, 1).contains("asked to close it"),
            "{}",
            why(&second, 1)
        );
        assert!(matches!(r.lookup(socket), Lookup::Live(ref v) if v.release_requested.is_some()));
    }

    #[test]
    fn cap_and_dry_run_release_nothing() {
        let r = registry(10);
        let set = candidates(&r, &[ResourceKind::AppObject]);
        let all = plan((0..10).map(CleanupAction::Release).collect());
        let run = execute(
            "p",
            &r,
            &set,
            &all,
            Some("10%".parse().unwrap()),
            false,
            ReleaseMode::Refuse,
        );
        assert!(run.cap_exceeded.is_some());
        assert_eq!(r.len(), 10);
        let run = execute("p", &r, &set, &all, None, true, ReleaseMode::Refuse);
        assert_eq!(run.counts()[1], 10);
        assert_eq!(r.len(), 10);
    }

    #[test]
    fn only_the_kinds_in_scope_are_shown() {
        let r = registry(2);
        assert!(candidates(&r, &[]).is_empty());
        assert!(candidates(&r, &[ResourceKind::Socket]).is_empty());
    }
}
