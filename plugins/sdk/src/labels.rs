//! Labels the host puts on the resources applications registered, as
//! plugins see them in [`crate::resources::ResourceSet`]. `warden.` names
//! are the host's, so an application's own labels cannot clash with them.

/// A resource's TTL in ms: it may go this long unused before cleanup
/// policies may release it.
pub const TTL_LABEL: &str = "warden.ttl_ms";

/// Set when a resource's owner process is gone: since when, in ms since
/// the epoch.
pub const ORPHAN_LABEL: &str = "warden.orphan";

/// Set when a resource is in a dependency cycle: the handle of the
/// cycle's first member, so the members of one cycle share it.
pub const CYCLE_LABEL: &str = "warden.cycle";
