//! The state a plugin keeps through the `state` import (WIT 0.2.0): one blob
//! per policy identity, held by whoever implements [`PluginStateStore`] (the
//! runtime persists it with the rest of its state), and what one call sees of
//! it: the blob as the call started, and what the call wrote, which is kept
//! only if the call returns normally.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// 1 MiB: room for a baseline per series of a few thousand series, small
/// enough that loading and saving it is never a cost that shows.
pub const DEFAULT_STATE_LIMIT: u64 = 1 << 20;

/// The largest `state_limit` a policy may ask for: the blob crosses into the
/// plugin on every `get`, and is written to disk after every change.
pub const MAX_STATE_LIMIT: u64 = 64 << 20;

/// Who a blob belongs to: a policy, by the file that declares it and its name.
/// A reload that keeps both keeps the blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId {
    /// The policy file.
    pub file: PathBuf,
    /// The policy's name.
    pub name: String,
}

/// Where plugin state lives between evaluations.
pub trait PluginStateStore: Send + Sync {
    /// Returns the blob of `id`, if it has one.
    fn load(&self, id: &PolicyId) -> Option<Arc<[u8]>>;

    /// Replaces the blob of `id` (`None`: forgets it). Called after a call
    /// that changed it returned normally.
    fn save(&self, id: &PolicyId, blob: Option<Arc<[u8]>>);
}

/// Plugin state in memory only: what an [`Evaluator`](crate::Evaluator) uses
/// unless it is given a store, so state works (for one process) everywhere.
#[derive(Debug, Default)]
pub struct MemoryStates(Mutex<HashMap<PolicyId, Arc<[u8]>>>);

impl PluginStateStore for MemoryStates {
    fn load(&self, id: &PolicyId) -> Option<Arc<[u8]>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn save(&self, id: &PolicyId, blob: Option<Arc<[u8]>>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match blob {
            Some(b) => map.insert(id.clone(), b),
            None => map.remove(id),
        };
    }
}

/// A policy's state binding: the store, its identity there and its cap.
#[derive(Clone)]
pub(crate) struct StateBinding {
    pub(crate) store: Arc<dyn PluginStateStore>,
    pub(crate) id: PolicyId,
    pub(crate) limit: u64,
}

impl std::fmt::Debug for StateBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateBinding")
            .field("id", &self.id)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// What one call sees of the policy's state.
#[derive(Debug, Default)]
pub(crate) struct StateCell {
    /// The blob when the call started.
    current: Option<Arc<[u8]>>,
    /// What the call wrote: `Some(None)` after `clear`.
    written: Option<Option<Arc<[u8]>>>,
    limit: usize,
}

impl StateCell {
    /// Starts a call that sees `current` and may write up to `limit` bytes.
    pub(crate) fn begin(&mut self, current: Option<Arc<[u8]>>, limit: u64) {
        self.current = current;
        self.written = None;
        self.limit = usize::try_from(limit).unwrap_or(usize::MAX);
    }

    pub(crate) fn get(&self) -> Option<Vec<u8>> {
        match &self.written {
            Some(w) => w.as_deref().map(<[u8]>::to_vec),
            None => self.current.as_deref().map(<[u8]>::to_vec),
        }
    }

    pub(crate) fn set(&mut self, value: Vec<u8>) -> Result<(), String> {
        if value.len() > self.limit {
            return Err(format!(
                "state of {} bytes refused: the policy's `state_limit` is {} bytes",
                value.len(),
                self.limit
            ));
        }
        self.written = Some(Some(value.into()));
        Ok(())
    }

    pub(crate) fn clear(&mut self) {
        self.written = Some(None);
    }

    /// Returns what the call wrote, if anything, and forgets it.
    pub(crate) fn take_written(&mut self) -> Option<Option<Arc<[u8]>>> {
        self.current = None;
        self.written.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_sees_its_own_writes_and_the_cap_refuses_more() {
        let mut cell = StateCell::default();
        cell.begin(Some(Arc::from(&b"old"[..])), 4);
        assert_eq!(cell.get().as_deref(), Some(&b"old"[..]));
        assert!(cell.set(b"12345".to_vec()).unwrap_err().contains("4 bytes"));
        cell.set(b"new".to_vec()).unwrap();
        assert_eq!(cell.get().as_deref(), Some(&b"new"[..]));
        cell.clear();
        assert_eq!(cell.get(), None);
        assert_eq!(cell.take_written(), Some(None));
        assert_eq!(cell.take_written(), None);
    }
}
