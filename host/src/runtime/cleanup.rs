//! Carrying out a cleanup plan, inside the policy's scope and by
//! systemd-tmpfiles' rules: a plugin decides, this module acts, and only on
//! what the scope grants.
//!
//! Every deletion walks from the scope root with `O_NOFOLLOW` directory
//! descriptors, so no symlink anywhere on the way is followed and nothing can
//! be swapped in between the check and the unlink. A target must:
//! - be an absolute path without `.` or `..`, under one of the scope's paths,
//!   and match none of its exclude globs;
//! - be on the scope root's filesystem (no mount point is crossed);
//! - be a regular file (sockets, FIFOs, devices, symlinks and directories are
//!   skipped), the same file the plugin was shown (same inode);
//! - not be held by another process's `flock` (tested with a non-blocking
//!   exclusive lock, held across the unlink).
//!
//! A plan that asks for more than the policy's cap (a count or a percentage
//! of the candidates) acts on nothing and says why. A dry run reports what
//! each action would do and does nothing.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::plugin::records::{CleanupAction, CleanupPlan, ResourceSet};

/// The most actions a run may take, as a number or a share of candidates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cap {
    /// At most this many.
    Count(u64),
    /// At most this percentage of the candidates (rounded down).
    Percent(f64),
}

impl Cap {
    /// The number of actions allowed among `candidates`.
    pub fn allowed(self, candidates: usize) -> u64 {
        match self {
            Cap::Count(n) => n,
            Cap::Percent(p) => ((candidates as f64) * p / 100.0).floor() as u64,
        }
    }
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cap::Count(n) => write!(f, "{n}"),
            Cap::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for Cap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` is not a percentage; write it like `10%`"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("`{s}`: a percentage is between 0% and 100%"));
            }
            Ok(Cap::Percent(p))
        } else {
            t.parse().map(Cap::Count).map_err(|_| {
                format!("`{s}` is not a cap; write a number of actions (`100`) or a share of candidates (`10%`)")
            })
        }
    }
}

/// What a policy's scope lets the executor do.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The scope's paths.
    pub roots: Vec<PathBuf>,
    /// Paths never touched.
    pub exclude: GlobSet,
    /// The most actions per run.
    pub cap: Option<Cap>,
    /// Report, do nothing.
    pub dry_run: bool,
}

impl Rules {
    /// Rules for `roots` with exclude `globs` (invalid globs are an error
    /// naming the glob).
    pub fn new(
        roots: Vec<PathBuf>,
        globs: &[String],
        cap: Option<Cap>,
        dry_run: bool,
    ) -> Result<Rules, String> {
        Ok(Rules {
            roots,
            exclude: exclude_set(globs)?,
            cap,
            dry_run,
        })
    }
}

/// Compiles exclude globs; `*` does not cross `/`, `**` does.
pub fn exclude_set(globs: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = globset::GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("`{g}` is not a glob: {e}"))?;
        b.add(glob);
    }
    // A pattern without a slash means a name anywhere, like `*.lock`.
    for g in globs.iter().filter(|g| !g.contains('/')) {
        b.add(Glob::new(&format!("**/{g}")).map_err(|e| format!("`{g}` is not a glob: {e}"))?);
    }
    b.build().map_err(|e| e.to_string())
}

/// What happened to one planned action.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Deleted; its size is freed.
    Deleted {
        /// Bytes freed.
        bytes: u64,
    },
    /// Dry run: it would have been deleted.
    WouldDelete {
        /// Bytes it would free.
        bytes: u64,
    },
    /// Outside what the scope grants; never touched.
    Refused {
        /// Why.
        why: String,
    },
    /// In scope, but left alone by a safety rule (locked, a socket, gone…).
    Skipped {
        /// Why.
        why: String,
    },
    /// The deletion failed.
    Failed {
        /// The error.
        error: String,
    },
}

/// One planned action and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// The action, as text.
    pub action: String,
    /// Its target, if it has one.
    pub target: Option<String>,
    /// The plugin's reason.
    pub reason: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// One run of a cleanup policy.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// The policy.
    pub policy: String,
    /// When it started and ended (ms since the epoch).
    pub started_ms: i64,
    /// When it ended.
    pub finished_ms: i64,
    /// Nothing was acted on by design.
    pub dry_run: bool,
    /// Candidates shown to the plugin.
    pub candidates: usize,
    /// Actions the plugin planned.
    pub planned: usize,
    /// Set if the run acted on nothing because the plan exceeded the cap.
    pub cap_exceeded: Option<String>,
    /// Every planned action with its outcome.
    pub items: Vec<Item>,
    /// Bytes freed (or that would be, in a dry run).
    pub bytes_freed: u64,
}

impl Run {
    /// How many actions ended in each outcome: deleted, would delete,
    /// refused, skipped, failed.
    pub fn counts(&self) -> [usize; 5] {
        let mut c = [0; 5];
        for i in &self.items {
            c[match i.outcome {
                Outcome::Deleted { .. } => 0,
                Outcome::WouldDelete { .. } => 1,
                Outcome::Refused { .. } => 2,
                Outcome::Skipped { .. } => 3,
                Outcome::Failed { .. } => 4,
            }] += 1;
        }
        c
    }
}

/// Carries out `plan` over `candidates` under `rules`.
pub fn execute(policy: &str, rules: &Rules, candidates: &ResourceSet, plan: &CleanupPlan) -> Run {
    let started_ms = crate::clock::now_ms();
    let mut run = Run {
        policy: policy.to_owned(),
        started_ms,
        finished_ms: started_ms,
        dry_run: rules.dry_run,
        candidates: candidates.len(),
        planned: plan.actions.len(),
        cap_exceeded: None,
        items: Vec::with_capacity(plan.actions.len()),
        bytes_freed: 0,
    };
    let acting = plan
        .actions
        .iter()
        .filter(|(a, _)| !matches!(a, CleanupAction::Notify(_)))
        .count() as u64;
    if let Some(cap) = rules.cap {
        let allowed = cap.allowed(candidates.len());
        if acting > allowed {
            let why = format!(
                "the plan asks for {acting} actions over {} candidates; the cap `{cap}` allows {allowed}, so nothing was done",
                candidates.len()
            );
            tracing::warn!(
                policy,
                planned = acting,
                allowed,
                "cleanup plan exceeds its cap; nothing done"
            );
            run.cap_exceeded = Some(why);
            run.finished_ms = crate::clock::now_ms();
            return run;
        }
    }
    for (i, (action, _)) in plan.actions.iter().enumerate() {
        let reason = plan.reason(i).to_owned();
        let target = action
            .target()
            .and_then(|t| candidates.name(t as usize))
            .map(str::to_owned);
        let outcome = match action {
            CleanupAction::DeletePath(t) => delete(rules, candidates, *t as usize),
            CleanupAction::Notify(message) => {
                tracing::info!(policy, "{message}");
                Outcome::Skipped {
                    why: "a notice; nothing to act on".into(),
                }
            }
            other => Outcome::Refused {
                why: format!("{} is not carried out for files yet", action_name(other)),
            },
        };
        if let Outcome::Deleted { bytes } | Outcome::WouldDelete { bytes } = outcome {
            run.bytes_freed += bytes;
        }
        if let Outcome::Refused { why } = &outcome {
            tracing::warn!(
                policy,
                target = target.as_deref().unwrap_or(""),
                "refused: {why}"
            );
        }
        run.items.push(Item {
            action: action_name(action).into(),
            target,
            reason,
            outcome,
        });
    }
    run.finished_ms = crate::clock::now_ms();
    run
}

fn action_name(a: &CleanupAction) -> &'static str {
    match a {
        CleanupAction::DeletePath(_) => "delete",
        CleanupAction::CloseResource(_) => "close",
        CleanupAction::KillProcess { .. } => "kill",
        CleanupAction::Release(_) => "release",
        CleanupAction::EvictCache(_) => "evict",
        CleanupAction::Notify(_) => "notify",
    }
}

fn refused(why: impl Into<String>) -> Outcome {
    Outcome::Refused { why: why.into() }
}

fn skipped(why: impl Into<String>) -> Outcome {
    Outcome::Skipped { why: why.into() }
}

fn delete(rules: &Rules, candidates: &ResourceSet, index: usize) -> Outcome {
    let Some(name) = candidates.name(index) else {
        return refused(format!("candidate {index} does not exist"));
    };
    let path = Path::new(name);
    if !path.is_absolute() {
        return refused(format!("`{name}` is not an absolute path"));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return refused(format!("`{name}` contains `.` or `..`"));
    }
    let Some((root, rel)) = rules
        .roots
        .iter()
        .find_map(|r| path.strip_prefix(r).ok().map(|rel| (r, rel)))
    else {
        return refused(format!("`{name}` is outside the policy's scope paths"));
    };
    if rel.as_os_str().is_empty() {
        return refused("a scope path itself is never deleted");
    }
    if rules.exclude.is_match(path) {
        return skipped("matches an exclude glob");
    }
    let expect_inode = candidates.handle(index).unwrap_or(0);
    match unlink_beneath(root, rel, expect_inode, rules.dry_run) {
        Ok(bytes) if rules.dry_run => Outcome::WouldDelete { bytes },
        Ok(bytes) => Outcome::Deleted { bytes },
        Err(Stop::Refuse(why)) => refused(why),
        Err(Stop::Skip(why)) => skipped(why),
        Err(Stop::Fail(e)) => Outcome::Failed { error: e },
    }
}

enum Stop {
    Refuse(String),
    Skip(String),
    Fail(String),
}

fn cstr(s: &OsStr) -> Result<CString, Stop> {
    CString::new(s.as_bytes()).map_err(|_| Stop::Refuse("a path with a NUL byte".into()))
}

fn fstatat(dir: &OwnedFd, name: &CString) -> std::io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is an open descriptor, `name` is NUL-terminated and `st`
    // is writable for the call.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(st)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn openat(dir: Option<&OwnedFd>, name: &CString, flags: i32) -> std::io::Result<OwnedFd> {
    let at = dir.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
    // SAFETY: `name` is NUL-terminated; the result is checked before use.
    let fd = unsafe { libc::openat(at, name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn kind_of(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFLNK => "a symlink",
        libc::S_IFDIR => "a directory",
        libc::S_IFSOCK => "a socket",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR | libc::S_IFBLK => "a device",
        _ => "not a regular file",
    }
}

/// Unlinks `root/rel` without following any symlink below `root` and
/// without leaving `root`'s filesystem; returns the file's size.
fn unlink_beneath(root: &Path, rel: &Path, expect_inode: u64, dry_run: bool) -> Result<u64, Stop> {
    let io = |what: &str, e: std::io::Error| Stop::Fail(format!("{what}: {e}"));
    let root_c = cstr(root.as_os_str())?;
    let mut dir = match openat(None, &root_c, libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(Stop::Skip("the scope path is gone".into()));
        }
        Err(e) => return Err(io("opening the scope path", e)),
    };
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut root_st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is open and `root_st` writable.
    if unsafe { libc::fstat(dir.as_raw_fd(), &mut root_st) } != 0 {
        return Err(io(
            "reading the scope path",
            std::io::Error::last_os_error(),
        ));
    }
    let parts: Vec<&OsStr> = rel.iter().collect();
    let (last, dirs) = parts.split_last().expect("rel is not empty");
    for part in dirs {
        let c = cstr(part)?;
        dir = match openat(
            Some(&dir),
            &c,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        ) {
            Ok(d) => d,
            Err(e)
                if e.raw_os_error() == Some(libc::ELOOP)
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                return Err(Stop::Refuse(format!(
                    "`{}` on the way is a symlink or not a directory; symlinks are never followed",
                    part.to_string_lossy()
                )));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Err(Stop::Skip("gone before it was reached".into()));
            }
            Err(e) => return Err(io("opening a directory on the way", e)),
        };
        // SAFETY: an all-zero `stat` is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `dir` is open and `st` writable.
        if unsafe { libc::fstat(dir.as_raw_fd(), &mut st) } != 0 {
            return Err(io(
                "reading a directory on the way",
                std::io::Error::last_os_error(),
            ));
        }
        if st.st_dev != root_st.st_dev {
            return Err(Stop::Refuse(format!(
                "`{}` is on another filesystem; a mount point is never crossed",
                part.to_string_lossy()
            )));
        }
    }
    let name = cstr(last)?;
    let st = match fstatat(&dir, &name) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(Stop::Skip("already gone".into()));
        }
        Err(e) => return Err(io("reading the file", e)),
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        let kind = kind_of(st.st_mode);
        return Err(if kind == "a symlink" {
            Stop::Refuse("a symlink; symlinks are never followed or deleted through".into())
        } else {
            Stop::Skip(format!("{kind}; only regular files are deleted"))
        });
    }
    if st.st_dev != root_st.st_dev {
        return Err(Stop::Refuse(
            "on another filesystem; a mount point is never crossed".into(),
        ));
    }
    if expect_inode != 0 && st.st_ino != expect_inode {
        return Err(Stop::Skip(
            "replaced since the plan was made (another inode)".into(),
        ));
    }
    // Another process's advisory lock means it is in use: leave it. The lock
    // is held across the unlink so nobody takes it in between.
    let file = match openat(
        Some(&dir),
        &name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
    ) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(Stop::Skip("already gone".into()));
        }
        Err(e) => return Err(io("opening the file to check its lock", e)),
    };
    // SAFETY: `file` is an open descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Stop::Skip("locked (flock) by another process".into())
        } else {
            io("locking the file", e)
        });
    }
    let bytes = u64::try_from(st.st_size).unwrap_or(0);
    if dry_run {
        return Ok(bytes);
    }
    // SAFETY: `dir` is open and `name` NUL-terminated.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::ENOENT) {
            Stop::Skip("already gone".into())
        } else {
            io("deleting", e)
        });
    }
    drop(file);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::records::NewResource;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn caps_parse_and_apply() {
        assert_eq!("10%".parse::<Cap>(), Ok(Cap::Percent(10.0)));
        assert_eq!("250".parse::<Cap>(), Ok(Cap::Count(250)));
        assert!("ten".parse::<Cap>().unwrap_err().contains("`10%`"));
        assert!("150%".parse::<Cap>().is_err());
        assert_eq!(Cap::Percent(10.0).allowed(1000), 100);
        assert_eq!(Cap::Percent(10.0).allowed(9), 0);
    }

    #[test]
    fn excludes_match_names_anywhere_and_paths() {
        let g = exclude_set(&["*.lock".into(), "/data/keep/**".into()]).unwrap();
        assert!(g.is_match("/data/a/b/c.lock"));
        assert!(g.is_match("/data/keep/x/y"));
        assert!(!g.is_match("/data/a/c.log"));
        assert!(exclude_set(&["a[".into()]).unwrap_err().contains("`a[`"));
    }

    fn set_of(paths: &[PathBuf]) -> ResourceSet {
        let mut set = ResourceSet::default();
        for p in paths {
            let ino = std::fs::symlink_metadata(p).map(|m| m.ino()).unwrap_or(0);
            set.push(NewResource {
                handle: ino,
                name: p.to_str().unwrap(),
                ..Default::default()
            });
        }
        set
    }

    fn plan_all(n: usize) -> CleanupPlan {
        CleanupPlan {
            reasons: vec!["old".into()],
            actions: (0..n as u32)
                .map(|i| (CleanupAction::DeletePath(i), 0))
                .collect(),
        }
    }

    /// A scope holding one of every trap, and files outside it.
    struct Trap {
        _tmp: tempfile::TempDir,
        scope: PathBuf,
        outside: PathBuf,
        _listener: std::os::unix::net::UnixListener,
        _lock: std::fs::File,
    }

    fn trap() -> (Trap, Vec<PathBuf>) {
        let tmp = tempfile::tempdir().unwrap();
        let scope = tmp.path().join("scope");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(scope.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("precious"), "keep").unwrap();
        std::fs::write(scope.join("old"), "delete me").unwrap();
        std::fs::write(scope.join("sub/old2"), "delete me too").unwrap();
        std::fs::write(scope.join("app.lock"), "excluded").unwrap();
        // A symlink to a file outside, and a symlinked directory leading out.
        std::os::unix::fs::symlink(outside.join("precious"), scope.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside, scope.join("linkdir")).unwrap();
        // A file another process holds an flock on (another descriptor is
        // enough: flock locks belong to the open file description).
        std::fs::write(scope.join("locked"), "in use").unwrap();
        let lock = std::fs::File::open(scope.join("locked")).unwrap();
        // SAFETY: `lock` is an open descriptor.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        let listener = std::os::unix::net::UnixListener::bind(scope.join("sock")).unwrap();
        let fifo = CString::new(scope.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path and a mode.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let targets = vec![
            scope.join("old"),
            scope.join("sub/old2"),
            scope.join("app.lock"),
            scope.join("link"),
            scope.join("linkdir/precious"),
            scope.join("locked"),
            scope.join("sock"),
            scope.join("fifo"),
            scope.join("sub/../../outside/precious"),
            outside.join("precious"),
            scope.clone(),
            PathBuf::from("relative/path"),
        ];
        (
            Trap {
                _tmp: tmp,
                scope,
                outside,
                _listener: listener,
                _lock: lock,
            },
            targets,
        )
    }

    #[test]
    fn a_trap_tree_loses_only_the_two_plain_old_files() {
        let (t, targets) = trap();
        let set = set_of(&targets);
        let rules = Rules::new(vec![t.scope.clone()], &["*.lock".into()], None, false).unwrap();
        let run = execute("trap", &rules, &set, &plan_all(targets.len()));
        let outcome = |i: usize| &run.items[i].outcome;
        assert!(
            matches!(outcome(0), Outcome::Deleted { bytes: 9 }),
            "{:?}",
            outcome(0)
        );
        assert!(matches!(outcome(1), Outcome::Deleted { bytes: 13 }));
        let why = |i: usize| match outcome(i) {
            Outcome::Refused { why } => format!("refused: {why}"),
            Outcome::Skipped { why } => format!("skipped: {why}"),
            other => panic!("{}: {other:?}", targets[i].display()),
        };
        assert!(why(2).contains("exclude"), "{}", why(2));
        assert!(
            why(3).starts_with("refused") && why(3).contains("symlink"),
            "{}",
            why(3)
        );
        assert!(
            why(4).starts_with("refused") && why(4).contains("symlink"),
            "{}",
            why(4)
        );
        assert!(why(5).contains("locked"), "{}", why(5));
        assert!(why(6).contains("socket"), "{}", why(6));
        assert!(why(7).contains("FIFO"), "{}", why(7));
        assert!(
            why(8).starts_with("refused") && why(8).contains(".."),
            "{}",
            why(8)
        );
        assert!(
            why(9).starts_with("refused") && why(9).contains("outside"),
            "{}",
            why(9)
        );
        assert!(why(10).starts_with("refused"), "{}", why(10));
        assert!(why(11).starts_with("refused"), "{}", why(11));
        assert_eq!(run.bytes_freed, 22);
        // Everything but the two old files is still there.
        assert!(!t.scope.join("old").exists() && !t.scope.join("sub/old2").exists());
        for kept in ["app.lock", "locked", "sock", "fifo"] {
            assert!(
                std::fs::symlink_metadata(t.scope.join(kept)).is_ok(),
                "{kept}"
            );
        }
        assert!(std::fs::symlink_metadata(t.scope.join("link")).is_ok());
        assert_eq!(
            std::fs::read_to_string(t.outside.join("precious")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn dry_run_lists_everything_and_deletes_nothing() {
        let (t, targets) = trap();
        let set = set_of(&targets);
        let rules = Rules::new(vec![t.scope.clone()], &["*.lock".into()], None, true).unwrap();
        let run = execute("trap", &rules, &set, &plan_all(targets.len()));
        assert!(run.dry_run);
        assert_eq!(
            run.items.len(),
            targets.len(),
            "every planned action is listed"
        );
        assert!(matches!(
            run.items[0].outcome,
            Outcome::WouldDelete { bytes: 9 }
        ));
        assert!(matches!(
            run.items[1].outcome,
            Outcome::WouldDelete { bytes: 13 }
        ));
        assert_eq!(run.counts()[1], 2);
        assert_eq!(run.items[0].reason, "old");
        assert!(t.scope.join("old").exists() && t.scope.join("sub/old2").exists());
    }

    #[test]
    fn a_plan_over_the_cap_does_nothing_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..1000)
            .map(|i| dir.path().join(format!("f{i}")))
            .collect();
        for f in &files {
            std::fs::write(f, "x").unwrap();
        }
        let set = set_of(&files);
        let rules = Rules::new(
            vec![dir.path().to_owned()],
            &[],
            Some(Cap::Percent(10.0)),
            false,
        )
        .unwrap();
        let run = execute("capped", &rules, &set, &plan_all(1000));
        let why = run.cap_exceeded.as_deref().unwrap();
        assert!(
            why.contains("1000 actions") && why.contains("allows 100"),
            "{why}"
        );
        assert!(run.items.is_empty());
        assert!(files.iter().all(|f| f.exists()));
        // Within the cap, it acts.
        let plan = CleanupPlan {
            reasons: vec!["old".into()],
            actions: (0..100)
                .map(|i| (CleanupAction::DeletePath(i), 0))
                .collect(),
        };
        let run = execute("capped", &rules, &set, &plan);
        assert_eq!(run.counts()[0], 100);
        assert_eq!(files.iter().filter(|f| f.exists()).count(), 900);
    }

    #[test]
    fn a_mount_point_inside_the_scope_is_not_crossed() {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&mnt)
            .stderr(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("not checked here: mounting a tmpfs needs CAP_SYS_ADMIN");
            return;
        }
        std::fs::write(mnt.join("inner"), "on another filesystem").unwrap();
        let set = set_of(&[mnt.join("inner")]);
        let rules = Rules::new(vec![dir.path().to_owned()], &[], None, false).unwrap();
        let run = execute("mounts", &rules, &set, &plan_all(1));
        let kept = mnt.join("inner").exists();
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        assert!(kept);
        assert!(
            matches!(&run.items[0].outcome, Outcome::Refused { why } if why.contains("another filesystem")),
            "{:?}",
            run.items[0]
        );
    }

    #[test]
    fn a_file_replaced_since_the_plan_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        std::fs::write(&f, "1").unwrap();
        let set = set_of(std::slice::from_ref(&f));
        std::fs::remove_file(&f).unwrap();
        std::fs::write(dir.path().join("b"), "keep the inode busy").unwrap();
        std::fs::write(&f, "new").unwrap();
        let rules = Rules::new(vec![dir.path().to_owned()], &[], None, false).unwrap();
        let run = execute("p", &rules, &set, &plan_all(1));
        // Same path, possibly another inode: never delete what was not judged.
        if Some(std::fs::metadata(&f).unwrap().ino()) != set.handle(0) {
            assert!(
                matches!(run.items[0].outcome, Outcome::Skipped { .. }),
                "{:?}",
                run.items
            );
            assert!(f.exists());
        }
    }
}
