//! What one evaluation may use: time, memory and output size, and the store
//! limiter that enforces the memory cap and remembers that it did.

use std::time::Duration;

/// Bounds on one evaluation, from the policy's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline for the call, enforced by epoch interruption.
    pub timeout: Duration,
    /// Cap on the plugin's linear memory, in bytes.
    pub memory_bytes: u64,
    /// Cap on the number of decisions one call may return.
    pub max_decisions: usize,
}

impl Limits {
    /// 100 ms: policies decide from a snapshot already in memory; anything
    /// slower is almost always a bug, and one slow plugin must not stall a cycle.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
    /// 64 MiB: ample for a snapshot of tens of thousands of records.
    pub const DEFAULT_MEMORY: u64 = 64 * 1024 * 1024;
    /// 100,000 decisions: far above any sane plan, far below what hurts the host.
    pub const DEFAULT_MAX_DECISIONS: usize = 100_000;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Self::DEFAULT_TIMEOUT,
            memory_bytes: Self::DEFAULT_MEMORY,
            max_decisions: Self::DEFAULT_MAX_DECISIONS,
        }
    }
}

/// Enforces the memory cap and records whether the plugin hit it, so the trap
/// that follows a refused allocation is reported as out-of-memory.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    pub(crate) limit: usize,
    pub(crate) hit: bool,
}

/// Tables hold function references; a plugin needs a few thousand at most.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
