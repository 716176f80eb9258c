//! Everything that can be wrong with GGUF bytes, each naming the field and its byte offset.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum GgufError {
    /// The bytes end before `field` does. When reading incrementally, more bytes may fix it.
    Truncated {
        field: String,
        offset: u64,
        needed: u64,
        available: u64,
    },
    /// A value is present but not acceptable.
    Invalid { field: String, offset: u64, reason: String },
    /// A metadata key is missing or has the wrong type (typed accessors).
    Metadata { key: String, reason: String },
    /// Memory for the file's bytes could not be had.
    OutOfMemory { bytes: u64 },
}

impl GgufError {
    pub(crate) fn invalid(field: impl Into<String>, offset: u64, reason: impl Into<String>) -> Self {
        GgufError::Invalid {
            field: field.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// True when more bytes could make the same input parse.
    pub fn is_truncation(&self) -> bool {
        matches!(self, GgufError::Truncated { .. })
    }
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgufError::Truncated { field, offset, needed, available } => write!(
                f,
                "GGUF truncated: {field} at byte {offset} needs the file to reach byte {needed}, but it has {available} bytes"
            ),
            GgufError::Invalid { field, offset, reason } => write!(f, "GGUF {field} at byte {offset}: {reason}"),
            GgufError::Metadata { key, reason } => write!(f, "GGUF metadata {key}: {reason}"),
            GgufError::OutOfMemory { bytes } => write!(f, "could not allocate {bytes} bytes for the GGUF file"),
        }
    }
}

impl std::error::Error for GgufError {}
