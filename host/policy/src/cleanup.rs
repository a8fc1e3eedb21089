//! The options of cleanup policies that are values, not behaviour: the cap on
//! the actions of one run, exclude globs, and the defaults of concurrency and
//! run timeout. The runtime's executor applies them.

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

#[cfg(test)]
mod tests {
    use super::*;

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
