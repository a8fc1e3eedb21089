//! # warden-plugins
//!
//! The plugins shipped with Warden and the guests its tests run, compiled to
//! `wasm32-wasip2` components by this crate's build script (see `build.rs`).
//!
//! - [`BUILTIN`]: the shipped plugins' bytes, which policies name by
//!   [`Builtin::name`] instead of a `.wasm` path.
//! - `<NAME>_COMPONENT`: the path of each guest's component.
//! - `foreach_cleanup!`, `foreach_recovery!`, `foreach_alert!`,
//!   `foreach_detector!`: invoke a macro once per guest of that kind.

#![deny(missing_docs)]

/// A plugin compiled into the `warden` binary.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The name a policy file uses for it, such as `temp-files`.
    pub name: &'static str,
    /// The policy kind it implements: `cleanup`, `recovery`, `alert` or `detector`.
    pub kind: &'static str,
    /// The component.
    pub bytes: &'static [u8],
}

/// Returns the shipped plugin called `name`.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTIN.iter().find(|b| b.name == name)
}

include!(concat!(env!("OUT_DIR"), "/gen.rs"));
