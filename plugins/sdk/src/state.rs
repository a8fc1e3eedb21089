//! The policy's own memory, kept by the host as a typed value: it survives
//! evaluations, reloads that keep the policy's file and name, and daemon
//! restarts, and is dropped with the policy.
//!
//! ```ignore
//! #[derive(serde::Serialize, serde::Deserialize, Default)]
//! struct Baseline { mean: f64, count: u64 }
//!
//! let mut b: Baseline = warden_sdk::state::load()?.unwrap_or_default();
//! b.count += 1;
//! warden_sdk::state::save(&b)?;
//! ```
//!
//! Values are stored as JSON, at most the policy's `state_limit` (1 MiB
//! unless it says otherwise). A change is kept only if the call returns:
//! after a trap, timeout or memory-limit hit the host forgets it, so a value
//! is never half-written.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Returns the value the policy stored last, or `None` if it never did.
/// A value stored by an older version of the plugin that no longer reads as
/// `T` is an error; [`clear`] it or read it as something more forgiving.
pub fn load<T: DeserializeOwned>() -> crate::Result<Option<T>> {
    match crate::host::state_get() {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| crate::Error::msg(format!("the stored state does not read back: {e}"))),
    }
}

/// Stores `value` for the next evaluations, replacing what was stored.
/// Refused when its JSON is larger than the policy's `state_limit`.
pub fn save<T: Serialize>(value: &T) -> crate::Result<()> {
    let bytes = serde_json::to_vec(value)?;
    crate::host::state_set(&bytes).map_err(crate::Error::msg)
}

/// Forgets the stored value.
pub fn clear() {
    crate::host::state_clear();
}
