//! Writing to the host's log. Lines are tagged by the host with the policy and
//! plugin, so a plugin need not repeat them.

pub use crate::__bindings::types::Level;

/// Writes `message` to the host's log at `level`.
pub fn write(level: Level, message: &str) {
    crate::host::log(level, message);
}

/// Logs at debug level, formatted like `format!`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, &::std::format!($($arg)*)) };
}

/// Logs at info level, formatted like `format!`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, &::std::format!($($arg)*)) };
}

/// Logs at warn level, formatted like `format!`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, &::std::format!($($arg)*)) };
}

/// Logs at error level, formatted like `format!`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, &::std::format!($($arg)*)) };
}
