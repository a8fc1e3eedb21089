//! The options of cleanup policies that are values, not behaviour: the cap on
//! the actions of one run, exclude globs, the paths no scope may cover, and
//! the defaults of concurrency and run timeout. The runtime's executor
//! applies them.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};

/// Deletions at once when a policy does not say (`max_concurrent`).
pub const DEFAULT_MAX_CONCURRENT: usize = 4;
/// How long a run may act when a policy does not say (`run_timeout`).
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(300);

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

/// Top-level directories of the system no scope may cover without
/// `allow_system_paths: true` (and any `/lib*`): what is in them belongs to
/// the operating system, and a cleanup plugin has no business there.
pub const SYSTEM_DIRS: &[&str] = &["etc", "usr", "boot", "proc", "sys", "dev", "bin", "sbin"];

/// Directories under Warden's data directory that hold its own state; a
/// scope may lie elsewhere under the data directory (`${data_dir}/scratch`).
pub const OWN_DATA_DIRS: &[&str] = &["state", "cache", "metrics"];

/// The directories a cleanup policy's scope may not cover: Warden's own data
/// and policies, and the system's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    /// Warden's data directory.
    pub data_dir: PathBuf,
    /// The directory the policy's file is in.
    pub policies_dir: PathBuf,
    /// The policy's `allow_system_paths`: system directories may be covered.
    pub allow_system_paths: bool,
}

impl Protected {
    /// Returns why a scope at `path` (absolute, without `..`) is refused, if
    /// it is: it is, holds or lies inside Warden's policies directory, is or
    /// holds its data directory, lies in one of the data directory's own
    /// subdirectories ([`OWN_DATA_DIRS`]), or (unless system paths are
    /// allowed) is or lies inside a system directory ([`SYSTEM_DIRS`], `/lib*`).
    pub fn why(&self, path: &Path) -> Option<String> {
        let within = |outer: &Path| path.starts_with(outer);
        let holds = |inner: &Path| inner.starts_with(path);
        if within(&self.policies_dir) || holds(&self.policies_dir) {
            return Some(format!(
                "`{}` covers Warden's policies directory `{}`; a cleanup scope never reaches the policies that govern it",
                path.display(),
                self.policies_dir.display()
            ));
        }
        if holds(&self.data_dir) {
            return Some(format!(
                "`{}` holds Warden's data directory `{}`; scope a directory of its own, such as `${{data_dir}}/scratch`",
                path.display(),
                self.data_dir.display()
            ));
        }
        if let Some(own) = OWN_DATA_DIRS
            .iter()
            .map(|d| self.data_dir.join(d))
            .find(|d| within(d))
        {
            return Some(format!(
                "`{}` lies in `{}`, where Warden keeps its own state",
                path.display(),
                own.display()
            ));
        }
        if self.allow_system_paths {
            return None;
        }
        let top = path.components().find_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy()),
            _ => None,
        })?;
        (SYSTEM_DIRS.contains(&top.as_ref()) || top.starts_with("lib")).then(|| {
            format!(
                "`{}` is in the system directory `/{top}`; a scope there needs `allow_system_paths: true`",
                path.display()
            )
        })
    }
}

/// Returns, for each directory on the way to the scope path `path` (its
/// ancestors, from `/`) that a user other than root can write, a sentence
/// saying which and who. Such a user can replace what the path leads to: a
/// run refuses a symlink that is not root's, but not a directory moved into
/// its place. A root-owned directory with the sticky bit (`/tmp`) is safe:
/// nobody can move what another user owns out of it.
pub fn writable_ancestors(path: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    ancestors.reverse();
    for dir in ancestors {
        let Ok(m) = std::fs::symlink_metadata(dir) else {
            break;
        };
        let mode = m.mode();
        let sticky_root = mode & 0o1000 != 0 && m.uid() == 0;
        let who = if m.file_type().is_symlink() && m.uid() != 0 {
            Some(format!("uid {}, who owns this symlink", m.uid()))
        } else if m.uid() != 0 {
            Some(format!("uid {}, its owner", m.uid()))
        } else if sticky_root {
            None
        } else if mode & 0o002 != 0 {
            Some("every user".to_owned())
        } else if mode & 0o020 != 0 && m.gid() != 0 {
            Some(format!("the members of group {}", m.gid()))
        } else {
            None
        };
        if let Some(who) = who {
            found.push(format!(
                "`{}`, on the way to the scope path `{}`, can be changed by {who}, who can then replace what the scope path leads to; give it to root (and no write access to others), or choose a scope whose every parent is root's",
                dir.display(),
                path.display()
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_others_can_write_are_named_but_not_sticky_root_ones() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home/alice");
        let scope = home.join("app/log");
        std::fs::create_dir_all(&scope).unwrap();
        // A fresh temporary tree of root's: nothing to say (the sticky,
        // world-writable /tmp above it included).
        assert_eq!(writable_ancestors(&scope), Vec::<String>::new());
        std::os::unix::fs::chown(&home, Some(1000), None).unwrap();
        let shared = tmp.path().join("home");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let w = writable_ancestors(&scope);
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(
            w[0].contains(&format!("`{}`", shared.display())) && w[0].contains("every user"),
            "{w:#?}"
        );
        assert!(
            w[1].contains(&format!("`{}`", home.display())) && w[1].contains("uid 1000"),
            "{w:#?}"
        );
        // Sticky and root's, like /tmp: safe.
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(writable_ancestors(&scope).len(), 1);
    }

    #[test]
    fn scopes_may_not_cover_warden_or_the_system() {
        let p = Protected {
            data_dir: "/var/lib/warden".into(),
            policies_dir: "/etc/warden/policies".into(),
            allow_system_paths: false,
        };
        let why = |s: &str| p.why(Path::new(s));
        for refused in [
            "/var",
            "/var/lib/warden",
            "/var/lib/warden/state/x",
            "/var/lib/warden/cache",
            "/etc/warden",
            "/etc/warden/policies/sub",
            "/etc/nginx/cache",
            "/usr/share/doc",
            "/lib64/x",
            "/lib",
            "/proc/1",
            "/dev/shm",
        ] {
            assert!(why(refused).is_some(), "{refused} is accepted");
        }
        for fine in [
            "/var/lib/warden/scratch",
            "/tmp/x",
            "/srv/cache",
            "/var/log/app",
        ] {
            assert_eq!(why(fine), None, "{fine}");
        }
        let allowed = Protected {
            allow_system_paths: true,
            ..p.clone()
        };
        assert_eq!(allowed.why(Path::new("/usr/share/doc")), None);
        assert!(
            allowed.why(Path::new("/etc/warden")).is_some(),
            "never the policies"
        );
    }

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
}
