//! The two kinds of failure a user sees.
//!
//! An [`InputError`] is the user's to fix (a bad file, flag or value): the CLI prints its
//! one-line message and exits with status 2. Anything else is a bug or an environment
//! failure and exits with status 1.

use std::fmt;

/// Bad input: a one-line message that names the file, flag or value at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    pub message: String,
}

impl InputError {
    pub fn new(message: impl Into<String>) -> Self {
        InputError { message: message.into() }
    }
}

/// Which of the two compared layers a problem belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::A => "A",
            Side::B => "B",
        })
    }
}

/// A problem with the activations handed to the similarity functions. They know no file
/// names, so they say which side; [`SimilarityError::naming`] puts the names in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimilarityError {
    #[error("layer {side}: {message}")]
    Layer { side: Side, message: String },
    #[error("{0}")]
    Both(String),
}

impl SimilarityError {
    pub fn layer(side: Side, message: impl Into<String>) -> Self {
        SimilarityError::Layer { side, message: message.into() }
    }

    /// The same problem of one layer said of `side` (a layer's own problems are found
    /// before it is known which side of a comparison it will be on).
    pub fn on(self, side: Side) -> Self {
        match self {
            SimilarityError::Layer { message, .. } => SimilarityError::Layer { side, message },
            both => both,
        }
    }

    /// The same problem as an [`InputError`] naming `a` or `b` instead of the side.
    pub fn naming(self, a: &str, b: &str) -> InputError {
        match self {
            SimilarityError::Layer { side: Side::A, message } => InputError::new(format!("{a}: {message}")),
            SimilarityError::Layer { side: Side::B, message } => InputError::new(format!("{b}: {message}")),
            SimilarityError::Both(message) => InputError::new(format!("{a} vs {b}: {message}")),
        }
    }
}
