//! What one evaluation may use — time, memory, output and reads — and the
//! store limiter that enforces the memory cap (linear memories and tables
//! together) and remembers that it did.

use std::time::Duration;

/// Bounds on one evaluation, from the policy's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline for the call, enforced by epoch interruption and
    /// obeyed by every host call (none blocks past it).
    pub timeout: Duration,
    /// Cap on the plugin's memory: its linear memories and tables together,
    /// in bytes.
    pub memory_bytes: u64,
    /// Cap on the number of decisions one call may return.
    pub max_decisions: usize,
    /// Cap on what one call's result takes once the host holds it (a plan's
    /// reasons, notices and one record per action with its target's name;
    /// alerts and findings with their strings), in bytes. Over it, the
    /// evaluation fails with `output_too_large`.
    pub max_output_bytes: u64,
    /// Cap on what one evaluation may read through `query-series` and
    /// `list-resources`, over all its calls, in bytes.
    pub max_query_bytes: u64,
}

impl Limits {
    /// 100 ms: policies decide from a snapshot already in memory; anything
    /// slower is almost always a bug, and one slow plugin must not stall a cycle.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
    /// 64 MiB: ample for a snapshot of tens of thousands of records.
    pub const DEFAULT_MEMORY: u64 = 64 * 1024 * 1024;
    /// 100,000 decisions: far above any sane plan, far below what hurts the host.
    pub const DEFAULT_MAX_DECISIONS: usize = 100_000;
    /// 64 MiB: a plan of 100,000 deletions with paths of 200 bytes takes
    /// about 32 MiB once recorded.
    pub const DEFAULT_MAX_OUTPUT: u64 = 64 * 1024 * 1024;
    /// 32 MiB: two million samples, or 100,000 resources with their names.
    pub const DEFAULT_MAX_QUERY: u64 = 32 * 1024 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Self::DEFAULT_TIMEOUT,
            memory_bytes: Self::DEFAULT_MEMORY,
            max_decisions: Self::DEFAULT_MAX_DECISIONS,
            max_output_bytes: Self::DEFAULT_MAX_OUTPUT,
            max_query_bytes: Self::DEFAULT_MAX_QUERY,
        }
    }
}

/// The most `notify` actions one cleanup plan may carry: the host logs each
/// one, and a plan is not a way to flood the log.
pub const MAX_NOTICES: usize = 1000;

/// What the host counts one action of a plan as, besides its strings: the
/// record of its outcome that a run keeps.
pub(crate) const ACTION_BYTES: u64 = 128;

/// What a table element costs the host: one pointer.
const TABLE_ELEMENT_BYTES: usize = 8;

/// The most instances, memories and tables one store may create. A
/// component built by `cargo` for `wasm32-wasip2` instantiates a handful of
/// core instances (the program, WASI shims and fix-ups) with one memory and
/// a few tables; wasmtime's defaults (10,000 of each) would let a plugin
/// reserve far more than its memory cap counts.
pub(crate) const MAX_INSTANCES: usize = 32;
/// See [`MAX_INSTANCES`].
pub(crate) const MAX_MEMORIES: usize = 4;
/// See [`MAX_INSTANCES`].
pub(crate) const MAX_TABLES: usize = 16;

/// Enforces the memory cap over every linear memory and table of a store
/// together, and records whether the plugin hit it, so the trap that follows
/// a refused allocation is reported as out-of-memory.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    pub(crate) limit: usize,
    /// Bytes of linear memory and table elements granted so far.
    pub(crate) used: usize,
    pub(crate) hit: bool,
}

impl MemoryCap {
    pub(crate) fn new(limit: u64) -> Self {
        MemoryCap {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            used: 0,
            hit: false,
        }
    }

    /// Grants growth from `current` to `desired` bytes if the total stays
    /// within the cap.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            self.hit = true;
            return false;
        }
        self.used = total;
        true
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instantiate(wat: &str, cap: u64) -> (wasmtime::Result<()>, MemoryCap) {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        let mut store = wasmtime::Store::new(&engine, MemoryCap::new(cap));
        store.limiter(|c| c);
        let r = wasmtime::Instance::new(&mut store, &module, &[]).map(drop);
        (r, store.into_data())
    }

    #[test]
    fn tables_count_against_the_memory_cap() {
        // A table of a million functions is 8 MiB of the host's memory.
        let (r, cap) = instantiate("(module (table 1048576 funcref))", 4 << 20);
        assert!(r.is_err() && cap.hit);
        let (r, cap) = instantiate("(module (table 1048576 funcref))", 16 << 20);
        assert!(r.is_ok() && !cap.hit && cap.used == 8 << 20);
        // Memory and tables share one cap: 2 MiB of memory plus 8 MiB of table.
        let (r, cap) = instantiate("(module (memory 32) (table 1048576 funcref))", 9 << 20);
        assert!(r.is_err() && cap.hit);
    }

    #[test]
    fn a_store_creates_no_more_memories_than_a_component_needs() {
        let memories: String = (0..MAX_MEMORIES + 1).map(|_| "(memory 0)").collect();
        let (r, cap) = instantiate(&format!("(module {memories})"), 64 << 20);
        assert!(r.is_err(), "{} memories were allowed", MAX_MEMORIES + 1);
        assert!(!cap.hit);
        let tables: String = (0..MAX_TABLES + 1).map(|_| "(table 0 funcref)").collect();
        let (r, _) = instantiate(&format!("(module {tables})"), 64 << 20);
        assert!(r.is_err(), "{} tables were allowed", MAX_TABLES + 1);
    }
}
