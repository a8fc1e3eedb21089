//! Recovery in a service's own process: load a policies directory and get
//! the [`Recovery`] service its guards use, with no daemon.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let embedded = warden::embed::Embedded::open("policies".as_ref(), "warden-data".as_ref())?;
//! let db = embedded.recovery.guard("db.query", &[])?;
//! let rows = db.call(|| Ok::<_, std::io::Error>(vec![1, 2, 3]));
//! # let _ = rows;
//! # Ok(())
//! # }
//! ```

use std::path::Path;
use std::sync::Arc;

use warden_plugin_host::{Engine, EngineOptions, NoData};
use warden_policy::{ParseContext, PluginCache, PolicyDir, ReloadReport};
use warden_runtime::recovery::{Options, Recovery};

/// A policies directory and the recovery service over its recovery policies.
#[derive(Debug)]
pub struct Embedded {
    /// The policies.
    pub policies: Arc<PolicyDir>,
    /// The recovery service: guards, reports, circuits.
    pub recovery: Arc<Recovery>,
}

impl Embedded {
    /// Loads `policies_dir`; breakers are kept in `data_dir/state` across
    /// restarts (call [`Recovery::save`] to write them) and compiled plugins
    /// in `data_dir/cache/plugins`. Fails if a policy file does not load.
    pub fn open(policies_dir: &Path, data_dir: &Path) -> anyhow::Result<Embedded> {
        Self::open_with(policies_dir, data_dir, Options::default())
    }

    /// [`Embedded::open`] with the service's options (a test clock, say);
    /// the state directory is set from `data_dir`.
    pub fn open_with(
        policies_dir: &Path,
        data_dir: &Path,
        opts: Options,
    ) -> anyhow::Result<Embedded> {
        // As the daemon: 0700, and refused when another user could plant
        // state or compiled plugins in it.
        warden_core::fsx::ensure_private_dir(data_dir, "data directory")?;
        warden_core::fsx::ensure_private_dir(&data_dir.join("cache"), "cache directory")?;
        let engine = Engine::new(&EngineOptions {
            cache_dir: Some(data_dir.join("cache").join("plugins")),
        })?;
        let policies = Arc::new(PolicyDir::new(
            policies_dir,
            ParseContext {
                data_dir: data_dir.to_path_buf(),
            },
            PluginCache::new(engine),
            Arc::new(NoData),
            Arc::default(),
        ));
        let recovery = Arc::new(Recovery::new(Options {
            state_dir: Some(data_dir.join("state")),
            ..opts
        }));
        let e = Embedded { policies, recovery };
        let report = e.reload();
        if let Some((file, errors)) = report.failed.first() {
            let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::bail!("failed to load `{}`: {}", file.display(), shown.join("; "));
        }
        Ok(e)
    }

    /// Reloads the directory and hands the new policies to the service.
    pub fn reload(&self) -> ReloadReport {
        let report = self.policies.reload();
        self.recovery.sync(&self.policies.current());
        report
    }
}
