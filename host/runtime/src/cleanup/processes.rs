//! Cleanup of processes: a policy whose `scope.processes` names processes
//! (by command, user and cgroup) and whose `scope.signals` names what it may
//! send is shown the live processes that match, and the host sends the
//! signals its plugin plans with `kill-process`.
//!
//! What makes it safe:
//! - only processes the selectors match are shown, and only those may be
//!   signalled; never pid 1, never Warden itself, never a kernel thread;
//! - another user's process only if `scope.processes.users` names that user
//!   (with no `users`, only processes of Warden's own user match);
//! - only the signals `scope.signals` names;
//! - through a pidfd: the process is pinned when the pidfd is opened, then
//!   its start time and user are read again and must be the ones shown to
//!   the plugin, so a pid reused since the listing is never signalled;
//! - the plan's cap, and `dry_run`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Read as _;
use std::sync::Arc;
use std::time::Instant;

use crate::cleanup::{ActsOn, Cap, Item, Outcome, Run, over_cap};
use warden_core::records::{CleanupAction, CleanupPlan, NewResource, ResourceKind, ResourceSet};
use warden_policy::schema::ProcessScope;

/// One process shown to the plugin, as it was when listed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    pid: u32,
    /// Start time in ticks since boot: with the pid, which process it is.
    start: u64,
    uid: u32,
}

/// The processes shown to a plugin.
#[derive(Debug, Default)]
pub struct Candidates {
    /// As the plugin sees them (kind `process`; labels `uid`, `user`,
    /// `state`; `created` is the start time).
    pub set: ResourceSet,
    listed: Vec<Listed>,
}

/// What a process is, read from `/proc`.
struct Proc {
    comm: String,
    argv0: String,
    state: char,
    ppid: u32,
    start: u64,
    uid: u32,
}

fn read_small(path: &str) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    std::fs::File::open(path)?
        .take(64 << 10)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads `pid`; `None` when it is gone.
fn read_proc(pid: u32) -> Option<Proc> {
    let stat = String::from_utf8(read_small(&format!("/proc/{pid}/stat")).ok()?).ok()?;
    // `comm` is in parentheses and may itself hold `)`: the last one ends it.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    // After comm: state (0), ppid (1), … starttime is field 22 overall, 19 here.
    let state = rest.first()?.chars().next()?;
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    let status = String::from_utf8(read_small(&format!("/proc/{pid}/status")).ok()?).ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let cmdline = read_small(&format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0);
    let argv0 = argv0.rsplit('/').next().unwrap_or_default().to_owned();
    Some(Proc {
        comm,
        argv0,
        state,
        ppid,
        start,
        uid,
    })
}

/// The cgroup v2 path of `pid`.
fn cgroup(pid: u32) -> Option<String> {
    let text = String::from_utf8(read_small(&format!("/proc/{pid}/cgroup")).ok()?).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// True if `path` is `under` or below it.
fn within(path: &str, under: &str) -> bool {
    let under = under.trim_end_matches('/');
    under.is_empty()
        || path == under
        || path
            .strip_prefix(under)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// User names to uids, from `/etc/passwd`.
fn uids(names: &[String]) -> Result<HashMap<u32, String>, String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| {
        format!("cannot read /etc/passwd to find the users of scope.processes: {e}")
    })?;
    let mut out = HashMap::new();
    for name in names {
        let uid = passwd
            .lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let n = f.next()?;
                let uid = f.nth(1)?.parse::<u32>().ok()?;
                (n == name).then_some(uid)
            })
            .next()
            .ok_or_else(|| {
                format!("scope.processes.users: there is no user `{name}` on this machine")
            })?;
        out.insert(uid, name.clone());
    }
    Ok(out)
}

/// This process's effective uid.
fn own_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The live processes `scope` matches: every criterion it gives must hold
/// (a command among `names`, a user among `users` — Warden's own when none
/// is named — a cgroup at or under one of `cgroups`). Never pid 1, Warden,
/// kernel threads or zombies.
pub fn candidates(scope: &ProcessScope) -> Result<Candidates, String> {
    let users = uids(&scope.users)?;
    let me = std::process::id();
    let own = own_uid();
    let mut out = Candidates::default();
    let dir = std::fs::read_dir("/proc").map_err(|e| format!("cannot list /proc: {e}"))?;
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        if pid <= 1 || pid == me {
            continue;
        }
        let Some(p) = read_proc(pid) else { continue };
        // Kernel threads are children of kthreadd (pid 2) and have no argv.
        if p.ppid == 2 || pid == 2 || matches!(p.state, 'Z' | 'X') {
            continue;
        }
        if !scope.names.is_empty() && !scope.names.iter().any(|n| *n == p.comm || *n == p.argv0) {
            continue;
        }
        let user_ok = if scope.users.is_empty() {
            p.uid == own
        } else {
            users.contains_key(&p.uid)
        };
        if !user_ok {
            continue;
        }
        if !scope.cgroups.is_empty() {
            let Some(cg) = cgroup(pid) else { continue };
            if !scope.cgroups.iter().any(|c| within(&cg, c)) {
                continue;
            }
        }
        if out.listed.len() >= crate::cleanup::walk::MAX_CANDIDATES {
            break;
        }
        let uid = p.uid.to_string();
        let user = users.get(&p.uid).cloned().unwrap_or_default();
        let state = p.state.to_string();
        let labels = [
            ("uid", uid.as_str()),
            ("user", user.as_str()),
            ("state", state.as_str()),
        ];
        let mut h = std::hash::DefaultHasher::new();
        (pid, p.start).hash(&mut h);
        let pushed = out.set.try_push(NewResource {
            handle: (1 << 52) | (h.finish() & ((1 << 52) - 1)),
            kind: Some(ResourceKind::Process),
            name: &p.comm,
            owner: &user,
            size_bytes: 0,
            created_ms: None,
            modified_ms: None,
            accessed_ms: None,
            pid: Some(pid),
            labels: &labels,
        });
        if pushed.is_none() {
            break;
        }
        out.listed.push(Listed {
            pid,
            start: p.start,
            uid: p.uid,
        });
    }
    Ok(out)
}

/// The signal numbers `names` (`TERM`, `SIGKILL`…) stand for.
pub fn signal_numbers(names: &[String]) -> Vec<(i32, String)> {
    names
        .iter()
        .filter_map(|n| {
            let n = n.trim_start_matches("SIG");
            let num = match n {
                "TERM" => libc::SIGTERM,
                "KILL" => libc::SIGKILL,
                "HUP" => libc::SIGHUP,
                "INT" => libc::SIGINT,
                "QUIT" => libc::SIGQUIT,
                "USR1" => libc::SIGUSR1,
                "USR2" => libc::SIGUSR2,
                "STOP" => libc::SIGSTOP,
                "CONT" => libc::SIGCONT,
                _ => return None,
            };
            Some((num, n.to_owned()))
        })
        .collect()
}

/// Opens a pidfd on `pid`: from then on it names that process, even if it
/// exits and the pid is given to another.
fn pidfd_open(pid: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) })
}

fn pidfd_send_signal(fd: &std::os::fd::OwnedFd, signal: i32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// What may be signalled: the policy's signals, and the uids it may reach.
#[derive(Debug, Clone)]
pub struct Allowed {
    /// Signal numbers and names.
    pub signals: Vec<(i32, String)>,
    /// Uids named in `scope.processes.users`; Warden's own when empty.
    pub uids: Vec<u32>,
}

impl Allowed {
    /// What `scope` allows.
    pub fn of(scope: &ProcessScope, signals: &[String]) -> Result<Allowed, String> {
        let uids = if scope.users.is_empty() {
            vec![own_uid()]
        } else {
            uids(&scope.users)?.into_keys().collect()
        };
        Ok(Allowed {
            signals: signal_numbers(signals),
            uids,
        })
    }
}

/// Carries out `plan` over `candidates`: `kill-process` and notices only.
pub fn execute(
    policy: &str,
    allowed: &Allowed,
    candidates: &Candidates,
    plan: &CleanupPlan,
    cap: Option<Cap>,
    dry_run: bool,
) -> Run {
    let started = Instant::now();
    let mut run = Run::begin(
        policy,
        ActsOn::Processes,
        dry_run,
        candidates.set.len(),
        plan.actions.len(),
    );
    if let Some(why) = over_cap(policy, cap, plan, candidates.set.len()) {
        run.cap_exceeded = Some(why);
        return run.end(started);
    }
    for (i, (action, _)) in plan.actions.iter().enumerate() {
        let reason: Arc<str> = plan.shared_reason(i).cloned().unwrap_or_else(|| "".into());
        let verb = super::action_name(action);
        let (target, outcome) = match action {
            CleanupAction::Notify(m) => {
                tracing::info!(policy, message = %super::notice(m), "cleanup notice");
                (
                    None,
                    Outcome::Skipped {
                        why: "a notice, logged".into(),
                    },
                )
            }
            CleanupAction::KillProcess { target, signal } => {
                match candidates.listed.get(*target as usize) {
                    None => (
                        None,
                        Outcome::Refused {
                            why: format!(
                                "candidate {target} does not exist; only the candidates shown may be acted on"
                            ),
                        },
                    ),
                    Some(l) => {
                        let name = candidates.set.name(*target as usize).unwrap_or_default();
                        (
                            Some(format!("{}:{name}", l.pid)),
                            signal_one(policy, allowed, l, *signal, dry_run),
                        )
                    }
                }
            }
            other => (
                None,
                Outcome::Refused {
                    why: format!(
                        "`{}` on a process: the host only signals processes (plan `kill-process` with a signal of `scope.signals`)",
                        super::action_name(other)
                    ),
                },
            ),
        };
        if let Outcome::Refused { why } = &outcome {
            tracing::warn!(policy, target = target.as_deref().unwrap_or(""), %why, "refused");
        }
        run.items.push(Item {
            action: Cow::Borrowed(verb),
            target,
            reason,
            outcome,
            attempts: 1,
        });
    }
    run.end(started)
}

/// Sends `signal` to the process `l` stands for, if everything allows it.
fn signal_one(policy: &str, allowed: &Allowed, l: &Listed, signal: i32, dry_run: bool) -> Outcome {
    let refused = |why: String| Outcome::Refused { why };
    let Some((_, name)) = allowed.signals.iter().find(|(n, _)| *n == signal) else {
        let names: Vec<&str> = allowed.signals.iter().map(|(_, n)| n.as_str()).collect();
        return refused(format!(
            "signal {signal} is not in scope.signals ({})",
            names.join(", ")
        ));
    };
    if l.pid <= 1 || l.pid == std::process::id() {
        return refused(format!("pid {}: never pid 1 or Warden itself", l.pid));
    }
    let fd = match pidfd_open(l.pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            return Outcome::Skipped {
                why: "it had exited".into(),
            };
        }
        Err(e) => {
            return Outcome::Failed {
                error: format!("pidfd_open: {e}"),
            };
        }
    };
    // The pidfd pins the process: read it again now, and it must be the one
    // shown to the plugin.
    let Some(now) = read_proc(l.pid) else {
        return Outcome::Skipped {
            why: "it had exited".into(),
        };
    };
    if now.start != l.start {
        return refused(format!(
            "pid {} is another process than the one shown (its start time changed): the pid was reused",
            l.pid
        ));
    }
    if now.uid != l.uid || !allowed.uids.contains(&now.uid) {
        return refused(format!(
            "pid {} runs as uid {}, which scope.processes.users does not name",
            l.pid, now.uid
        ));
    }
    if dry_run {
        tracing::info!(policy, pid = l.pid, signal = %name, "dry run: would signal");
        return Outcome::WouldSignal {
            signal: format!("SIG{name}"),
        };
    }
    match pidfd_send_signal(&fd, signal) {
        Ok(()) => {
            tracing::warn!(policy, pid = l.pid, signal = %name, "signalled a process");
            Outcome::Signalled {
                signal: format!("SIG{name}"),
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Outcome::Skipped {
            why: "it had exited".into(),
        },
        Err(e) => Outcome::Failed {
            error: format!("pidfd_send_signal: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_match_at_component_boundaries() {
        assert!(within("/system.slice/app.service", "/system.slice"));
        assert!(within("/system.slice", "/system.slice/"));
        assert!(!within("/system.slice2/x", "/system.slice"));
        assert!(within("/anything", "/"));
    }

    #[test]
    fn pid_1_warden_and_signals_out_of_scope_are_refused_and_a_reused_pid_is_not_signalled() {
        let allowed = Allowed {
            signals: signal_numbers(&["TERM".into()]),
            uids: vec![own_uid()],
        };
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let p = read_proc(child.id()).unwrap();
        let listed = Listed {
            pid: child.id(),
            start: p.start,
            uid: p.uid,
        };
        let why = |o: Outcome| match o {
            Outcome::Refused { why } => why,
            other => panic!("{other:?}"),
        };
        assert!(
            why(signal_one("p", &allowed, &listed, libc::SIGKILL, false))
                .contains("not in scope.signals (TERM)")
        );
        let init = Listed {
            pid: 1,
            ..listed.clone()
        };
        assert!(
            why(signal_one("p", &allowed, &init, libc::SIGTERM, false)).contains("never pid 1")
        );
        let me = Listed {
            pid: std::process::id(),
            ..listed.clone()
        };
        assert!(
            why(signal_one("p", &allowed, &me, libc::SIGTERM, false)).contains("Warden itself")
        );
        // The same pid with another start time: a reused pid.
        let reused = Listed {
            start: listed.start + 1,
            ..listed.clone()
        };
        assert!(why(signal_one("p", &allowed, &reused, libc::SIGTERM, false)).contains("reused"));
        let other_user = Allowed {
            uids: vec![own_uid() + 1],
            ..allowed.clone()
        };
        assert!(
            why(signal_one("p", &other_user, &listed, libc::SIGTERM, false))
                .contains("does not name")
        );
        // None of that touched it; a dry run does not either.
        assert_eq!(
            signal_one("p", &allowed, &listed, libc::SIGTERM, true),
            Outcome::WouldSignal {
                signal: "SIGTERM".into()
            }
        );
        assert!(child.try_wait().unwrap().is_none());
        assert_eq!(
            signal_one("p", &allowed, &listed, libc::SIGTERM, false),
            Outcome::Signalled {
                signal: "SIGTERM".into()
            }
        );
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
        // Gone now: skipped, not failed.
        assert!(matches!(
            signal_one("p", &allowed, &listed, libc::SIGTERM, false),
            Outcome::Skipped { .. }
        ));
    }
}
