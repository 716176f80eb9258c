//! The model's weights on the device, uploaded once at load, in the file's bytes: each matrix as
//! row slices that fit one binding (lavapipe binds at most 128 MiB; the tied output matrix is
//! 178 MB as Q8_0), each norm vector as f32. The forward pass names weights by the model's own
//! [`Matrix`] and norm slices; they are found again here by their address in the model, which
//! never moves while the model lives.

use super::recorder::Recorder;
use crate::gpu::{BufferId, GpuApi, GpuError};
use crate::model::{Matrix, Model};
use rill_kernels::QuantType;
use std::collections::HashMap;

/// Rows `row0..row0 + rows` of a matrix, in their own buffer.
pub struct Slice {
    pub buffer: BufferId,
    pub row0: usize,
    pub rows: usize,
}

pub struct DeviceMatrix {
    pub ty: QuantType,
    pub cols: usize,
    pub row_bytes: usize,
    pub slices: Vec<Slice>,
}

#[derive(Default)]
pub struct Weights {
    matrices: HashMap<usize, DeviceMatrix>,
    vectors: HashMap<usize, BufferId>,
    /// Bytes uploaded.
    pub bytes: u64,
}

impl Weights {
    /// Uploads every weight of `model`; a slice holds at most `max_binding` bytes and
    /// `max_rows` rows. `progress(bytes)` is told as they go.
    pub fn upload(
        api: &dyn GpuApi,
        recorder: &mut Recorder,
        model: &Model,
        max_binding: u64,
        max_rows: usize,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Weights, GpuError> {
        let mut w = Weights::default();
        let mut matrices = vec![&model.token_embd, &model.output];
        let mut vectors = vec![&model.output_norm];
        for l in &model.layers {
            matrices.extend([&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]);
            vectors.extend([&l.attn_norm, &l.ffn_norm]);
            vectors.extend([&l.q_norm, &l.k_norm, &l.post_attn_norm, &l.post_ffn_norm].into_iter().flatten());
        }
        for m in matrices {
            if w.matrices.contains_key(&key(m)) {
                continue; // the tied output matrix is the embedding table
            }
            let row_bytes = m.bytes().len() / m.rows;
            let per_slice = ((max_binding as usize / row_bytes).min(max_rows)).max(1);
            let mut slices = Vec::new();
            for row0 in (0..m.rows).step_by(per_slice) {
                let rows = per_slice.min(m.rows - row0);
                let bytes = &m.bytes()[row0 * row_bytes..(row0 + rows) * row_bytes];
                let buffer = recorder.create_buffer(api, bytes.len() as u64, &m.name)?;
                api.write_buffer(buffer, 0, bytes)?;
                w.bytes += bytes.len() as u64;
                progress(w.bytes);
                slices.push(Slice { buffer, row0, rows });
            }
            w.matrices.insert(
                key(m),
                DeviceMatrix {
                    ty: m.ty,
                    cols: m.cols,
                    row_bytes,
                    slices,
                },
            );
        }
        for v in vectors {
            let bytes: &[u8] = bytemuck::cast_slice(v);
            let buffer = recorder.create_buffer(api, bytes.len() as u64, "norm")?;
            api.write_buffer(buffer, 0, bytes)?;
            w.bytes += bytes.len() as u64;
            w.vectors.insert(v.as_ptr() as usize, buffer);
        }
        progress(w.bytes);
        Ok(w)
    }

    pub fn matrix(&self, m: &Matrix) -> &DeviceMatrix {
        &self.matrices[&key(m)]
    }

    /// The device copy of a norm vector of the model.
    pub fn vector(&self, v: &[f32]) -> BufferId {
        self.vectors[&(v.as_ptr() as usize)]
    }
}

fn key(m: &Matrix) -> usize {
    m.bytes().as_ptr() as usize
}
