//! What a registry operation can fail with; each variant maps to one documented
//! API error kind.

use gateway_domain::{RepositoryError, ValidationErrors};

/// Failure of a registry use case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The input is invalid; every bad field is named.
    #[error("invalid input: {0}")]
    Invalid(ValidationErrors),
    /// No server matches the reference.
    #[error("server `{0}` not found")]
    NotFound(String),
    /// Another server already has this name.
    #[error("a server named `{0}` already exists")]
    NameTaken(String),
    /// The write was based on an outdated version of the server.
    #[error("server changed since version {expected}; current version is {current}")]
    StaleVersion {
        /// Version the caller based its change on.
        expected: i64,
        /// Version stored now.
        current: i64,
    },
    /// Registering stdio servers (running host commands) is disabled by configuration.
    #[error("stdio upstreams are disabled; set upstreams.allow_stdio = true to allow them")]
    StdioDisabled,
    /// The stdio command is not among the executables the operator allowed.
    #[error(
        "`{0}` is not among the executables stdio upstreams may run (upstreams.stdio_commands)"
    )]
    StdioCommand(String),
    /// The item is defined in the configuration file, which is where it changes.
    #[error("`{0}` is defined in the configuration file; change it there")]
    Configured(String),
    /// This version of a published server exists with another document: versions
    /// are immutable.
    #[error(
        "version {version} of `{name}` is already published with other content; publish a new version"
    )]
    VersionExists {
        /// The server.
        name: String,
        /// The version.
        version: String,
    },
    /// No published server (or version) matches.
    #[error("no published server `{0}`")]
    PublishedNotFound(String),
    /// No view has this name.
    #[error("view `{0}` not found")]
    ViewNotFound(String),
    /// Another view already has this name.
    #[error("a view named `{0}` already exists")]
    ViewNameTaken(String),
    /// The store is unreachable; retrying later may succeed.
    #[error("registry store unavailable: {0}")]
    Unavailable(String),
    /// An unexpected failure; details are logged, not shown to clients.
    #[error("internal registry error: {0}")]
    Internal(String),
}

impl RegistryError {
    /// Maps a repository error that has no use-case-specific meaning.
    pub(crate) fn from_repository(error: RepositoryError, server: &str) -> Self {
        match error {
            RepositoryError::NotFound => Self::NotFound(server.to_owned()),
            RepositoryError::Duplicate(name) => Self::NameTaken(name),
            RepositoryError::StaleVersion { expected, current } => {
                Self::StaleVersion { expected, current }
            }
            RepositoryError::Unavailable(reason) => Self::Unavailable(reason),
            RepositoryError::Internal(reason) => Self::Internal(reason),
        }
    }
}

impl From<ValidationErrors> for RegistryError {
    fn from(errors: ValidationErrors) -> Self {
        Self::Invalid(errors)
    }
}
