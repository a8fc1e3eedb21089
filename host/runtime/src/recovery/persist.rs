//! `recovery.json` in the state directory: every circuit (breaker, window,
//! budget, history) and the decision history, written whole to a temporary
//! file, synced and renamed over the old one, so a crash leaves the old
//! state or the new one. Written when something changed, at most once per
//! [`SAVE_EVERY`] by the daemon and at shutdown.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::Recovery;
use super::budget::Budget;
use super::circuit::{self, PolicyRef};
use super::history::History;
use super::service::DecisionRecord;

/// How often the daemon writes the state when it changed.
pub const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

const FILE: &str = "recovery.json";

/// One circuit as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedCircuit {
    pub(crate) id: String,
    pub(crate) policy: PolicyRef,
    pub(crate) operation: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) breaker: super::breaker::Saved,
    pub(crate) budget: Budget,
    pub(crate) history: History,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    circuits: Vec<SavedCircuit>,
    decisions: Vec<DecisionRecord>,
}

type Loaded = (HashMap<String, SavedCircuit>, VecDeque<DecisionRecord>);

/// Reads what an earlier run saved. An unreadable file is moved aside.
pub(crate) fn load(dir: &Path) -> Loaded {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::default(),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot read the saved recovery state; starting without it");
            return Loaded::default();
        }
    };
    match serde_json::from_slice::<Saved>(&bytes) {
        Ok(s) => {
            let circuits = s
                .circuits
                .into_iter()
                .map(|c| (circuit::key(&c.policy, &c.operation, &c.labels).0, c))
                .collect();
            (circuits, s.decisions.into())
        }
        Err(e) => {
            let aside =
                path.with_extension(format!("json.unreadable-{}", warden_core::clock::now_ms()));
            let _ = std::fs::rename(&path, &aside);
            tracing::error!(file = %path.display(), moved_to = %aside.display(), error = %e, "the saved recovery state is unreadable; starting without it");
            Loaded::default()
        }
    }
}

impl Recovery {
    /// Writes the state if it changed since the last write (or `force`).
    /// Returns an error naming the file if it could not be written.
    pub fn save(&self, force: bool) -> std::io::Result<()> {
        let Some(dir) = &self.opts.state_dir else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::Relaxed) && !force {
            return Ok(());
        }
        let circuits: Vec<_> = self
            .circuits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let saved = Saved {
            circuits: circuits.iter().map(|c| c.save()).collect(),
            decisions: self
                .decisions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect(),
        };
        // 0700 directory, 0600 file, replaced whole and durably: the
        // temporary is removed when a step fails (a full disk).
        let write = || -> std::io::Result<()> {
            let bytes = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
            warden_core::fsx::create_private_dir_all(dir)?;
            warden_core::fsx::write_atomic(dir, FILE, &bytes)
        };
        write().map_err(|e| {
            // Try again next time.
            self.dirty.store(true, Ordering::Relaxed);
            std::io::Error::new(
                e.kind(),
                format!("failed to write `{}`: {e}", dir.join(FILE).display()),
            )
        })
    }
}
