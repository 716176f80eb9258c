//! GGUF: the model file format (header of metadata and tensor infos, then aligned tensor data).
//!
//! [`Gguf::parse`] reads a whole file in memory; [`ChunkedReader`] reads one arriving in pieces
//! and reports the header as soon as it is complete. Both validate every field; nothing panics
//! on any input.

mod chunked;
mod error;
mod parse;
mod value;

pub use chunked::{ChunkedReader, Progress};
pub use error::GgufError;
pub use value::{Array, StringArray, Value, ValueType};

use rill_kernels::QuantType;

/// A tensor's description from the header.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `shape[0]` is the row length (contiguous), then rows, ...
    pub shape: Vec<u64>,
    pub ty: QuantType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    pub n_bytes: u64,
    pub n_elements: u64,
}

/// A parsed GGUF header: metadata in file order and tensor infos. The data section starts at
/// `data_offset`.
#[derive(Clone, Debug)]
pub struct Gguf {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_offset: u64,
}

impl Gguf {
    /// Parses a complete file held in memory; tensor data ranges are checked against its length.
    pub fn parse(file: &[u8]) -> Result<Gguf, GgufError> {
        parse::parse_header(file, Some(file.len() as u64))
    }

    /// Parses the header from `prefix`, the start of a file of `file_len` bytes when known
    /// (tensor data ranges are then checked against it). A [`GgufError::Truncated`] error means
    /// the prefix is too short.
    pub fn parse_header(prefix: &[u8], file_len: Option<u64>) -> Result<Gguf, GgufError> {
        parse::parse_header(prefix, file_len)
    }

    /// The bytes of tensor `t` within `file` (the bytes `parse` read, or a longer prefix).
    pub fn tensor_bytes<'a>(&self, t: &TensorInfo, file: &'a [u8]) -> Result<&'a [u8], GgufError> {
        let start = self.data_offset + t.offset;
        let end = start + t.n_bytes;
        file.get(start as usize..end as usize)
            .ok_or_else(|| GgufError::Truncated {
                field: format!("tensor {:?} data", t.name),
                offset: start,
                needed: end,
                available: file.len() as u64,
            })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn typed<'a, T>(&'a self, key: &str, what: &str, f: impl Fn(&'a Value) -> Option<T>) -> Result<T, GgufError> {
        let v = self.get(key).ok_or_else(|| GgufError::Metadata {
            key: key.into(),
            reason: "missing".into(),
        })?;
        f(v).ok_or_else(|| GgufError::Metadata {
            key: key.into(),
            reason: format!("expected {what}, found {v} ({:?})", v.value_type()),
        })
    }

    pub fn u32(&self, key: &str) -> Result<u32, GgufError> {
        self.typed(key, "an integer that fits in u32", |v| {
            v.as_u64().and_then(|n| u32::try_from(n).ok())
        })
    }

    pub fn u64(&self, key: &str) -> Result<u64, GgufError> {
        self.typed(key, "a non-negative integer", Value::as_u64)
    }

    pub fn f32(&self, key: &str) -> Result<f32, GgufError> {
        self.typed(key, "a float", Value::as_f32)
    }

    pub fn bool(&self, key: &str) -> Result<bool, GgufError> {
        self.typed(key, "a bool", Value::as_bool)
    }

    pub fn str(&self, key: &str) -> Result<&str, GgufError> {
        self.typed(key, "a string", Value::as_str)
    }

    pub fn array(&self, key: &str) -> Result<&Array, GgufError> {
        self.typed(key, "an array", Value::as_array)
    }

    /// `general.architecture`, which prefixes the model's hyperparameter keys.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.str("general.architecture")
    }

    /// The key `{architecture}.{suffix}`, e.g. `gemma3.block_count`.
    pub fn arch_key(&self, suffix: &str) -> Result<String, GgufError> {
        Ok(format!("{}.{suffix}", self.architecture()?))
    }

    pub fn arch_u32(&self, suffix: &str) -> Result<u32, GgufError> {
        self.u32(&self.arch_key(suffix)?)
    }

    pub fn arch_f32(&self, suffix: &str) -> Result<f32, GgufError> {
        self.f32(&self.arch_key(suffix)?)
    }

    /// `{architecture}.{suffix}` read by `read` when present: `Ok(None)` when it is missing, an
    /// error when it has the wrong type (a malformed value must not pass for a default).
    pub fn arch_opt<'a, T>(
        &'a self,
        suffix: &str,
        read: impl Fn(&'a Gguf, &str) -> Result<T, GgufError>,
    ) -> Result<Option<T>, GgufError> {
        let key = self.arch_key(suffix)?;
        if self.get(&key).is_none() {
            return Ok(None);
        }
        read(self, &key).map(Some)
    }

    pub fn block_count(&self) -> Result<u32, GgufError> {
        self.arch_u32("block_count")
    }

    pub fn context_length(&self) -> Result<u32, GgufError> {
        self.arch_u32("context_length")
    }

    pub fn embedding_length(&self) -> Result<u32, GgufError> {
        self.arch_u32("embedding_length")
    }

    /// Bytes the header and data take: the file length a complete file has.
    pub fn file_len(&self) -> u64 {
        self.tensors
            .iter()
            .map(|t| self.data_offset + t.offset + t.n_bytes)
            .max()
            .unwrap_or(self.data_offset)
    }
}
