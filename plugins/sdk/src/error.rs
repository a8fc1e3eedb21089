//! The error a plugin returns to the host: a message the operator reads in the
//! policy's status and log.

use std::fmt;

/// Why a plugin could not decide. The host records it as the evaluation's
/// outcome. Returned from `new`, it refuses the config; with [`Error::at`] it
/// points at the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    path: Option<String>,
}

/// `Result` with [`Error`] as its error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Returns an error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error {
            message: message.to_string(),
            path: None,
        }
    }

    /// Returns an error about the config field at `path` (`rules[3].threshold`),
    /// which `warden check` reports at that field's line and column.
    pub fn at(path: impl Into<String>, message: impl fmt::Display) -> Self {
        Error {
            message: message.to_string(),
            path: Some(path.into()),
        }
    }

    /// Returns the message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Returns the config field it is about, if any.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::msg(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::msg(message)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::msg(e)
    }
}
