//! The four kinds of policy plugin and the WIT world and export each one has.

use std::fmt;
use std::str::FromStr;

/// A kind of policy plugin; each is one WIT world with one exported interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Plans cleanup among candidates (`cleanup-strategy`).
    Cleanup,
    /// Decides what to do about a failure (`recovery-strategy`).
    Recovery,
    /// Says which alert conditions hold (`alert-rule`).
    Alert,
    /// Finds patterns and predicts exhaustion (`detector`).
    Detector,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::Cleanup, Kind::Recovery, Kind::Alert, Kind::Detector];

    /// Returns the name policy files use for it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Cleanup => "cleanup",
            Kind::Recovery => "recovery",
            Kind::Alert => "alert",
            Kind::Detector => "detector",
        }
    }

    /// Returns its WIT world.
    pub fn world(self) -> &'static str {
        match self {
            Kind::Cleanup => "cleanup-strategy",
            Kind::Recovery => "recovery-strategy",
            Kind::Alert => "alert-rule",
            Kind::Detector => "detector",
        }
    }

    /// Returns the interface its world exports.
    pub fn interface(self) -> &'static str {
        match self {
            Kind::Cleanup => "cleanup",
            Kind::Recovery => "recovery",
            Kind::Alert => "alerting",
            Kind::Detector => "detection",
        }
    }

    /// Returns the kind whose world exports `interface`.
    pub fn from_interface(interface: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.interface() == interface)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown plugin kind `{s}`; expected one of cleanup, recovery, alert, detector"
                )
            })
    }
}
