//! One error type for the crate; the Python layer turns every one into `Bm25Error`.

use std::fmt;

use tantivy::directory::error::OpenReadError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The index path cannot be used (a file, unwritable, or a folder holding other files).
    BadPath,
    /// The folder holds an index of another format, schema or tantivy version.
    Incompatible,
    /// A caller passed a bad value (k <= 0, mismatched lengths, ...).
    InvalidArgument,
    /// tantivy failed (I/O, lock held by another writer, corrupt files).
    Index,
    /// A bug: a panic caught before it could reach Python.
    Internal,
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadPath => "bad_path",
            ErrorKind::Incompatible => "incompatible_index",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Index => "index",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<tantivy::TantivyError> for Error {
    fn from(err: tantivy::TantivyError) -> Self {
        match err {
            tantivy::TantivyError::IncompatibleIndex(inc)
            | tantivy::TantivyError::OpenReadError(OpenReadError::IncompatibleIndex(inc)) => {
                Error::new(
                    ErrorKind::Incompatible,
                    format!("the index was written by an incompatible tantivy version: {inc:?}"),
                )
            }
            tantivy::TantivyError::LockFailure(lock, detail) => Error::new(
                ErrorKind::Index,
                format!(
                    "the index is locked by another writer ({lock:?}{}); \
                     close the other retriever or use another path",
                    detail.map(|d| format!(": {d}")).unwrap_or_default()
                ),
            ),
            other => Error::new(ErrorKind::Index, format!("tantivy error: {other}")),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::new(ErrorKind::Index, format!("I/O error: {err}"))
    }
}
