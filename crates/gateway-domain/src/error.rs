//! Errors shared across layers: field-level validation errors (so every adapter can
//! name each bad field) and the repository port's error.

use std::fmt;

use thiserror::Error;

/// One invalid input field: a JSON-pointer-like path (`transport.url`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, as the client wrote it.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// Every problem found in one input, collected so a client can fix them all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Error)]
pub struct ValidationErrors(Vec<FieldError>);

impl ValidationErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A single error.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.push(field, message);
        errors
    }

    /// Records an error.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Records the error of a fallible parse, if any, and returns its value.
    pub fn check<T, E: fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(field, error.to_string());
                None
            }
        }
    }

    /// Moves the errors of a nested input under `prefix`.
    pub fn absorb(&mut self, prefix: &str, nested: ValidationErrors) {
        for error in nested.0 {
            let field = match (prefix.is_empty(), error.field.is_empty()) {
                (true, _) => error.field,
                (false, true) => prefix.to_owned(),
                (false, false) => format!("{prefix}.{}", error.field),
            };
            self.push(field, error.message);
        }
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn into_result<T>(self, value: impl FnOnce() -> T) -> Result<T, Self> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self)
        }
    }

    /// The recorded errors.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", error.field, error.message)?;
        }
        Ok(())
    }
}

/// What a repository adapter can report. Adapters map their driver errors into it,
/// so no database type or schema detail reaches the services or the API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RepositoryError {
    /// The record does not exist.
    #[error("not found")]
    NotFound,
    /// A unique key (the server name) is already taken.
    #[error("{0} is already taken")]
    Duplicate(String),
    /// Optimistic concurrency: the record changed since the caller read it.
    #[error("stale version: expected {expected}, current {current}")]
    StaleVersion {
        /// The version the caller based its write on.
        expected: i64,
        /// The version in the store now.
        current: i64,
    },
    /// The store cannot be reached or timed out; the operation may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else; the message is for logs, not for clients.
    #[error("store error: {0}")]
    Internal(String),
}
