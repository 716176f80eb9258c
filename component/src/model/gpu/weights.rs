//! The model's weights on the device, uploaded once at load, in the file's bytes: each matrix as
//! row slices that fit one binding (lavapipe binds at most 128 MiB; the tied output matrix is
//! 178 MB as Q8_0), each norm vector as f32. Matrices that read the same input in the same
//! format are stacked into one (a layer's Q, K and V; its gate and up), so that one dispatch
//! computes them all. The forward pass names weights by the model's own [`Matrix`] and norm
//! slices; they are found again here by their address in the model, which never moves while
//! the model lives.

use super::recorder::Recorder;
use crate::gpu::{BufferId, GpuApi, GpuError};
use crate::model::{Matrix, Model};
use rill_kernels::{wgsl, QuantType};
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
    /// Rows of each stacked matrix, in order (one entry when not stacked).
    pub parts: Vec<usize>,
}

/// The rows of a matrix or of matrices stacked in one buffer, keyed by their addresses.
#[derive(Default)]
pub struct Weights {
    matrices: HashMap<Vec<usize>, DeviceMatrix>,
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
        let fits = |ms: &[&Matrix]| {
            ms.windows(2).all(|p| p[0].ty == p[1].ty && p[0].cols == p[1].cols)
                && ms
                    .iter()
                    .map(|m| wgsl::repacked_len(m.ty, m.bytes().len()) as u64)
                    .sum::<u64>()
                    <= max_binding
                && ms.iter().map(|m| m.rows).sum::<usize>() <= max_rows
        };
        let mut groups: Vec<Vec<&Matrix>> = Vec::new();
        for l in &model.layers {
            let qkv = [&l.wq, &l.wk, &l.wv];
            if fits(&qkv) {
                groups.push(qkv.to_vec());
            } else if fits(&qkv[..2]) {
                groups.extend([vec![&l.wq, &l.wk], vec![&l.wv]]);
            } else {
                groups.extend(qkv.map(|m| vec![m]));
            }
            if fits(&[&l.w_gate, &l.w_up]) {
                groups.push(vec![&l.w_gate, &l.w_up]);
            } else {
                groups.extend([vec![&l.w_gate], vec![&l.w_up]]);
            }
            groups.extend([vec![&l.wo], vec![&l.w_down]]);
        }
        groups.extend([vec![&model.token_embd], vec![&model.output]]);
        for ms in groups {
            let k = key(&ms);
            if !w.matrices.contains_key(&k) {
                let m = w.stack(api, recorder, &ms, max_binding, max_rows, progress)?;
                w.matrices.insert(k, m);
            }
        }
        let mut vectors = vec![&model.output_norm];
        for l in &model.layers {
            vectors.extend([&l.attn_norm, &l.ffn_norm]);
            vectors.extend([&l.post_attn_norm, &l.post_ffn_norm].into_iter().flatten());
            // Per-head norms, query heads' then key heads', as one binding.
            if let (Some(q), Some(k)) = (&l.q_norm, &l.k_norm) {
                let both = [q.as_slice(), k.as_slice()].concat();
                let buffer = w.vector_buffer(api, recorder, &both)?;
                w.vectors.insert(q.as_ptr() as usize, buffer);
            }
        }
        for v in vectors {
            let buffer = w.vector_buffer(api, recorder, v)?;
            w.vectors.insert(v.as_ptr() as usize, buffer);
        }
        progress(w.bytes);
        Ok(w)
    }

    /// Uploads `ms` stacked, in row slices of at most `max_binding` bytes and `max_rows` rows.
    fn stack(
        &mut self,
        api: &dyn GpuApi,
        recorder: &mut Recorder,
        ms: &[&Matrix],
        max_binding: u64,
        max_rows: usize,
        progress: &mut dyn FnMut(u64),
    ) -> Result<DeviceMatrix, GpuError> {
        let bytes: Vec<u8> = ms
            .iter()
            .flat_map(|m| wgsl::repack(m.ty, m.bytes()).into_owned())
            .collect();
        let rows: usize = ms.iter().map(|m| m.rows).sum();
        let row_bytes = bytes.len() / rows;
        let per_slice = ((max_binding as usize / row_bytes).min(max_rows)).max(1);
        let mut slices = Vec::new();
        for row0 in (0..rows).step_by(per_slice) {
            let n = per_slice.min(rows - row0);
            let part = &bytes[row0 * row_bytes..(row0 + n) * row_bytes];
            let buffer = recorder.create_buffer(api, part.len() as u64, &ms[0].name)?;
            api.write_buffer(buffer, 0, part)?;
            self.bytes += part.len() as u64;
            progress(self.bytes);
            slices.push(Slice { buffer, row0, rows: n });
        }
        Ok(DeviceMatrix {
            ty: ms[0].ty,
            cols: ms[0].cols,
            row_bytes,
            slices,
            parts: ms.iter().map(|m| m.rows).collect(),
        })
    }

    fn vector_buffer(&mut self, api: &dyn GpuApi, recorder: &mut Recorder, v: &[f32]) -> Result<BufferId, GpuError> {
        let bytes: &[u8] = bytemuck::cast_slice(v);
        let buffer = recorder.create_buffer(api, bytes.len() as u64, "norm")?;
        api.write_buffer(buffer, 0, bytes)?;
        self.bytes += bytes.len() as u64;
        Ok(buffer)
    }

    /// `ms` stacked on the device, if they were uploaded so (one matrix: itself).
    pub fn stacked(&self, ms: &[&Matrix]) -> Option<&DeviceMatrix> {
        self.matrices.get(&key(ms))
    }

    pub fn matrix(&self, m: &Matrix) -> &DeviceMatrix {
        self.stacked(&[m])
            .expect("every matrix is on the device, alone or stacked")
    }

    /// The device copy of a norm vector of the model (of a layer's query head norm: both head
    /// norms).
    pub fn vector(&self, v: &[f32]) -> BufferId {
        self.vectors[&(v.as_ptr() as usize)]
    }
}

fn key(ms: &[&Matrix]) -> Vec<usize> {
    ms.iter().map(|m| m.bytes().as_ptr() as usize).collect()
}
