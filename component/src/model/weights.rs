//! The model's tensors, kept quantised in the file's bytes.

use crate::gguf::{Gguf, TensorInfo};
use rill_kernels::{dequantize, matmul, KernelPath, QuantType};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("tensor {0:?} is missing")]
    Missing(String),
    #[error("tensor {name:?} has shape {shape:?}, expected {expected:?}")]
    Shape {
        name: String,
        shape: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error("tensor {name:?}: {reason}")]
    Data { name: String, reason: String },
}

/// A 2-D weight matrix: `rows` rows of `cols` values in format `ty`, rows contiguous.
pub struct Matrix {
    pub name: String,
    pub ty: QuantType,
    pub rows: usize,
    pub cols: usize,
    file: Arc<Vec<u8>>,
    start: usize,
    len: usize,
}

impl Matrix {
    pub fn bytes(&self) -> &[u8] {
        &self.file[self.start..self.start + self.len]
    }

    /// `out = x · selfᵀ`: x is (n, cols), out is (n, rows).
    pub fn matmul(&self, path: KernelPath, x: &[f32], out: &mut [f32]) {
        matmul(path, self.ty, self.bytes(), x, self.cols, out).expect("shapes checked at load");
    }

    /// Row `i` as f32 (an embedding lookup).
    pub fn row(&self, i: usize, out: &mut [f32]) {
        let row_bytes = self.len / self.rows;
        dequantize(self.ty, &self.bytes()[i * row_bytes..(i + 1) * row_bytes], out).expect("shapes checked at load");
    }
}

/// Looks tensors up by name in a loaded file and checks their shapes.
pub struct Loader<'a> {
    pub gguf: &'a Gguf,
    pub file: Arc<Vec<u8>>,
}

impl Loader<'_> {
    fn info(&self, name: &str, expected: &[u64]) -> Result<&TensorInfo, WeightError> {
        let t = self
            .gguf
            .tensor(name)
            .ok_or_else(|| WeightError::Missing(name.to_string()))?;
        if t.shape != expected {
            return Err(WeightError::Shape {
                name: name.into(),
                shape: t.shape.clone(),
                expected: expected.to_vec(),
            });
        }
        Ok(t)
    }

    /// A (rows, cols) matrix; ggml lists the shape as [cols, rows].
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix, WeightError> {
        let t = self.info(name, &[cols as u64, rows as u64])?;
        let start = (self.gguf.data_offset + t.offset) as usize;
        let m = Matrix {
            name: name.into(),
            ty: t.ty,
            rows,
            cols,
            file: self.file.clone(),
            start,
            len: t.n_bytes as usize,
        };
        // Check once that the kernels accept the bytes (alignment, format), so matmul can't fail later.
        let mut probe = vec![0.0; cols];
        dequantize(t.ty, &m.bytes()[..t.n_bytes as usize / rows], &mut probe).map_err(|e| WeightError::Data {
            name: name.into(),
            reason: e.to_string(),
        })?;
        if t.ty.vec_dot_type().is_none() {
            return Err(WeightError::Data {
                name: name.into(),
                reason: format!("{} cannot be a weight format", t.ty),
            });
        }
        Ok(m)
    }

    /// A vector (norm weights), dequantised to f32.
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, WeightError> {
        let t = self.info(name, &[len as u64])?;
        let bytes = self.gguf.tensor_bytes(t, &self.file).map_err(|e| WeightError::Data {
            name: name.into(),
            reason: e.to_string(),
        })?;
        let mut out = vec![0.0; len];
        dequantize(t.ty, bytes, &mut out).map_err(|e| WeightError::Data {
            name: name.into(),
            reason: e.to_string(),
        })?;
        Ok(out)
    }
}
