//! Shared test helpers: the reference model's path and a small GGUF writer for synthetic files.
#![allow(dead_code)]

pub mod batching;
pub mod reference;

use rill_engine::gguf::{Array, Value};
use std::path::PathBuf;

/// `path` with `..` resolved lexically: WASI refuses paths that climb out of a preopened folder.
fn lexical(path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for part in std::path::Path::new(path).components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The reference model (fetched by `rill pull` in tests/run; `RILL_MODEL` overrides the path).
pub fn model_path() -> PathBuf {
    let path = std::env::var("RILL_MODEL").map(PathBuf::from).unwrap_or_else(|_| {
        lexical(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/gemma-3-270m-q4_k_m.gguf"
        ))
    });
    assert!(
        path.exists(),
        "reference model missing at {}: run `cargo run -p rill -- pull --dir models` (or tests/run)",
        path.display()
    );
    path
}

pub fn model_bytes() -> Vec<u8> {
    std::fs::read(model_path()).unwrap()
}

/// Writes GGUF files field by field, so tests can build valid files and break them on purpose.
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn new(version: u32, tensor_count: u64, kv_count: u64) -> Writer {
        let mut w = Writer {
            bytes: b"GGUF".to_vec(),
        };
        w.u32(version).u64(tensor_count).u64(kv_count);
        w
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.bytes.extend_from_slice(s.as_bytes());
        self
    }
    pub fn value(&mut self, v: &Value) -> &mut Self {
        match v {
            Value::U8(x) => self.bytes.push(*x),
            Value::I8(x) => self.bytes.push(*x as u8),
            Value::U16(x) => self.bytes.extend_from_slice(&x.to_le_bytes()),
            Value::I16(x) => self.bytes.extend_from_slice(&x.to_le_bytes()),
            Value::U32(x) => self.bytes.extend_from_slice(&x.to_le_bytes()),
            Value::I32(x) => self.bytes.extend_from_slice(&x.to_le_bytes()),
            Value::F32(x) => self.bytes.extend_from_slice(&x.to_le_bytes()),
            Value::Bool(x) => self.bytes.push(*x as u8),
            Value::String(s) => {
                self.string(s);
            }
            Value::Array(a) => {
                self.array(a);
            }
            Value::U64(x) => self.bytes.extend_from_slice(&x.to_le_bytes()),
            Value::I64(x) => self.bytes.extend_from_slice(&x.to_le_bytes()),
            Value::F64(x) => self.bytes.extend_from_slice(&x.to_le_bytes()),
        }
        self
    }
    pub fn array(&mut self, a: &Array) -> &mut Self {
        self.u32(a.element_type() as u32).u64(a.len() as u64);
        match a {
            Array::U8(v) => v.iter().for_each(|x| self.bytes.push(*x)),
            Array::I8(v) => v.iter().for_each(|x| self.bytes.push(*x as u8)),
            Array::U16(v) => v.iter().for_each(|x| self.bytes.extend_from_slice(&x.to_le_bytes())),
            Array::I16(v) => v.iter().for_each(|x| self.bytes.extend_from_slice(&x.to_le_bytes())),
            Array::U32(v) => v.iter().for_each(|x| self.bytes.extend_from_slice(&x.to_le_bytes())),
            Array::I32(v) => v.iter().for_each(|x| self.bytes.extend_from_slice(&x.to_le_bytes())),
            Array::F32(v) => v.iter().for_each(|x| self.bytes.extend_from_slice(&x.to_le_bytes())),
            Array::Bool(v) => v.iter().for_each(|x| self.bytes.push(*x as u8)),
            Array::U64(v) => v.iter().for_each(|x| self.bytes.extend_from_slice(&x.to_le_bytes())),
            Array::I64(v) => v.iter().for_each(|x| self.bytes.extend_from_slice(&x.to_le_bytes())),
            Array::F64(v) => v.iter().for_each(|x| self.bytes.extend_from_slice(&x.to_le_bytes())),
            Array::String(v) => v.iter().for_each(|s| {
                self.string(s);
            }),
            Array::Array(v) => v.iter().for_each(|a| {
                self.array(a);
            }),
        }
        self
    }
    pub fn kv(&mut self, key: &str, v: &Value) -> &mut Self {
        self.string(key).u32(v.value_type() as u32).value(v)
    }
    pub fn tensor(&mut self, name: &str, shape: &[u64], ggml_type: u32, offset: u64) -> &mut Self {
        self.string(name).u32(shape.len() as u32);
        for d in shape {
            self.u64(*d);
        }
        self.u32(ggml_type).u64(offset)
    }
    /// Pads to `alignment` and appends `data_len` bytes of tensor data.
    pub fn data(&mut self, alignment: usize, data_len: usize) -> Vec<u8> {
        let mut out = self.bytes.clone();
        out.resize(out.len().div_ceil(alignment) * alignment + data_len, 0xab);
        out
    }
}

/// `shared/reference/`: llama.cpp's outputs for the reference model (`RILL_REFERENCE` overrides).
pub fn reference_dir() -> PathBuf {
    std::env::var("RILL_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| lexical(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference")))
}

pub fn reference_json(name: &str) -> serde_json::Value {
    let path = reference_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A file of the repository's `tests/fixtures`, parsed.
pub fn fixture_json(name: &str) -> serde_json::Value {
    let path = lexical(&format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR")));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}
