//! The crate's one error type.

/// Why a quota definition, a name or a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A definition breaks a rule; `field` is its path in the definition
    /// (`limits.soft`, `scope.matchers[0].op`).
    #[error("quota `{quota}`: `{field}`: {reason}")]
    Invalid {
        /// The quota's name.
        quota: String,
        /// The field at fault.
        field: String,
        /// What is wrong and what to write instead.
        reason: String,
    },
    /// Two definitions share a name.
    #[error("quota `{quota}` is defined twice; quota names must be unique")]
    Duplicate {
        /// The name.
        quota: String,
    },
    /// No quota has this name.
    #[error("no quota is named `{quota}`")]
    Unknown {
        /// The name asked for.
        quota: String,
    },
    /// A snapshot could not be read.
    #[error("cannot read the quota snapshot: {reason}")]
    Snapshot {
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Returns the field at fault, for an invalid definition.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    pub(crate) fn invalid(
        quota: &str,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Error {
        Error::Invalid {
            quota: quota.to_owned(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}
