//! The forward pass's operations on a GPU, through `rill:gpu` ([`GpuApi`]): weights uploaded
//! once, activations and the KV cache kept on the device, the WGSL kernels of `rill-kernels`.
//! A step's operations are recorded into one pass and submitted once ([`Device::submit`]);
//! only the logits come back.

mod kv_pool;
mod recorder;
mod weights;

use super::device::Device;
use super::forward::{ForwardError, SeqInput};
use super::{Config, Matrix, Model, Rope};
use crate::gpu::{AdapterInfo, Binding, BufferId, GpuApi, GpuError, PipelineId};
use crate::tokenizer::TokenId;
pub use kv_pool::KvPool;
use recorder::{Bind, Recorder};
use rill_kernels::wgsl::{self, MatmulVariant};
use rill_kernels::QuantType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use weights::DeviceMatrix;
use weights::Weights;

/// An activation matrix in a device buffer (f32, row-major). The buffer is only ever grown.
#[derive(Default)]
pub struct GpuTensor {
    buffer: Option<BufferId>,
    len: usize,
    capacity: usize,
}

impl GpuTensor {
    fn buffer(&self) -> BufferId {
        self.buffer.expect("resized before use")
    }
}

/// Attention's per-step tables, uploaded at layer 0 and bound by every layer: per token
/// (position, start of its sequence's block table), the block tables, and each RoPE's cos and
/// sin table (by the rope's address: global and sliding layers rotate differently), made
/// once a step, not once a layer.
#[derive(Default)]
pub struct StepTables {
    pages: Option<(Binding, Binding)>,
    rotations: Vec<(usize, Binding)>,
}

struct Pipelines {
    /// Mat-muls by format and variant, compiled when first used.
    matmul: Mutex<HashMap<(QuantType, MatmulVariant), PipelineId>>,
    embed: PipelineId,
    residual: PipelineId,
    residual_normed: PipelineId,
    geglu: PipelineId,
    gather: PipelineId,
    attention_input: PipelineId,
    attention: PipelineId,
}

impl Pipelines {
    fn new(api: &dyn GpuApi, model: &Model) -> Result<Pipelines, GpuError> {
        let compile = |k: wgsl::Kernel| api.create_pipeline(&k.source, k.entry, k.entry);
        let embed_ty = model.token_embd.ty;
        let embed = wgsl::embed(embed_ty).ok_or_else(|| unsupported(embed_ty))?;
        let head_norms = model.layers.iter().any(|l| l.q_norm.is_some());
        Ok(Pipelines {
            matmul: Mutex::default(),
            embed: compile(embed)?,
            residual: compile(wgsl::residual(false))?,
            residual_normed: compile(wgsl::residual(true))?,
            geglu: compile(wgsl::geglu())?,
            gather: compile(wgsl::gather())?,
            attention_input: compile(wgsl::attention_input(head_norms))?,
            attention: compile(wgsl::attention())?,
        })
    }
}

fn unsupported(ty: QuantType) -> GpuError {
    GpuError::Validation(format!("no GPU kernel for {ty} weights"))
}

/// Slots in each KV pool, at most (the pools are one binding each).
const MAX_KV_SLOTS: u64 = 8192;
/// Rows a workgroup of the mat-mul takes; a slice has at most this many times the grid's
/// largest dimension.
const MATMUL_ROWS: usize = 8;

pub struct Gpu {
    api: Arc<dyn GpuApi>,
    pub info: AdapterInfo,
    pipelines: Pipelines,
    weights: Weights,
    pub kv: Arc<KvPool>,
    recorder: Mutex<Recorder>,
    max_binding: u64,
    max_groups: u32,
}

fn bytes<T: bytemuck::NoUninit>(v: &[T]) -> &[u8] {
    bytemuck::cast_slice(v)
}

/// A grid of `count` workgroups, wrapped into rows of at most `max` (kernels index by
/// `y · 65535 + x`, so `max` is 65535 wherever the device allows more).
fn grid(count: usize, max: u32) -> [u32; 3] {
    let max = max.min(65535) as usize;
    [count.min(max) as u32, count.div_ceil(max) as u32, 1]
}

impl Gpu {
    /// Puts `model` on the device: compiles its kernels, uploads its weights (telling `progress`
    /// the bytes so far) and makes the KV pools for `kv_slot_bytes` (global, sliding).
    pub fn new(
        api: Arc<dyn GpuApi>,
        model: &Model,
        kv_slot_bytes: (u64, u64),
        progress: &mut dyn FnMut(u64),
    ) -> Result<Gpu, GpuError> {
        let limits = api.limits();
        let max_binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let align = limits
            .min_storage_buffer_offset_alignment
            .max(limits.min_uniform_buffer_offset_alignment) as u64;
        let mut recorder = Recorder::new(align);
        let pipelines = Pipelines::new(&*api, model)?;
        let max_rows = MATMUL_ROWS * limits.max_compute_workgroups_per_dimension.min(65535) as usize;
        let weights = Weights::upload(&*api, &mut recorder, model, max_binding, max_rows, progress)?;
        let slots = |bytes: u64| (max_binding / bytes.max(1)).min(MAX_KV_SLOTS) as u32;
        let kv = KvPool::new(
            kv_slot_bytes,
            (slots(kv_slot_bytes.0), slots(kv_slot_bytes.1)),
            |size, label| recorder.create_buffer(&*api, size, label),
        )?;
        Ok(Gpu {
            info: api.adapter_info(),
            api,
            pipelines,
            weights,
            kv: Arc::new(kv),
            recorder: Mutex::new(recorder),
            max_binding,
            max_groups: limits.max_compute_workgroups_per_dimension,
        })
    }

    fn recorder(&self) -> MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dispatch(&self, pipeline: PipelineId, binds: &[Bind], groups: [u32; 3]) {
        self.recorder().dispatch(&*self.api, pipeline, binds, groups);
    }

    fn upload(&self, data: &[u8]) -> Option<Binding> {
        let mut r = self.recorder();
        r.upload(&*self.api, data).map_err(|e| r.fail(e)).ok()
    }

    /// The mat-mul pipeline for `ty` and `variant`, compiled on first use.
    fn matmul_pipeline(&self, ty: QuantType, variant: MatmulVariant) -> Result<PipelineId, GpuError> {
        let mut compiled = self.pipelines.matmul.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&p) = compiled.get(&(ty, variant)) {
            return Ok(p);
        }
        let k = wgsl::matmul(ty, variant).ok_or_else(|| unsupported(ty))?;
        let p = self.api.create_pipeline(&k.source, k.entry, &format!("matmul {ty}"))?;
        compiled.insert((ty, variant), p);
        Ok(p)
    }

    /// `m` (stacked, or sliced) times `x`, into `outs` (one per stacked matrix, or one for
    /// GEGLU), x normed by `norm` when given.
    fn run_matmul(
        &self,
        m: &DeviceMatrix,
        x: &GpuTensor,
        norm: Option<(&[f32], f32)>,
        geglu: bool,
        outs: &[&GpuTensor],
    ) {
        let variant = MatmulVariant {
            normed: norm.is_some(),
            outputs: outs.len() as u32,
            geglu,
        };
        let pipeline = match self.matmul_pipeline(m.ty, variant) {
            Ok(p) => p,
            Err(e) => return self.recorder().fail(e),
        };
        let n = x.len / m.cols;
        let total: usize = m.parts.iter().sum();
        let rows = if geglu { total / 2 } else { total };
        let seg1 = m.parts[0];
        let seg2 = seg1 + m.parts.get(1).copied().unwrap_or(0);
        let (norm_bind, eps) = match norm {
            Some((w, eps)) => (Bind::Buffer(self.weights.vector(w)), eps),
            None => (Bind::Skip, 0.0),
        };
        for s in &m.slices {
            let slice_rows = if geglu { rows } else { s.rows };
            let params = [
                slice_rows as u32,
                m.cols as u32,
                n as u32,
                m.row_bytes as u32,
                s.row0 as u32,
                rows as u32,
                eps.to_bits(),
                seg1 as u32,
                seg2 as u32,
            ];
            let mut binds = vec![
                Bind::Buffer(s.buffer),
                Bind::Buffer(x.buffer()),
                Bind::Upload(bytes(&params)),
                Bind::Buffer(outs[0].buffer()),
                norm_bind,
            ];
            binds.extend(outs[1..].iter().map(|o| Bind::Buffer(o.buffer())));
            self.dispatch(
                pipeline,
                &binds,
                [slice_rows.div_ceil(MATMUL_ROWS) as u32, n.div_ceil(8) as u32, 1],
            );
        }
    }
}

impl Device for Gpu {
    type Tensor = GpuTensor;
    type AttentionScratch = StepTables;

    fn resize(&self, t: &mut GpuTensor, len: usize) -> Result<(), ForwardError> {
        if len > t.capacity {
            let size = (len * 4) as u64;
            if size > self.max_binding {
                return Err(ForwardError::Gpu(GpuError::OutOfMemory(format!(
                    "{size} bytes of activations are more than the GPU binds at once ({} bytes): use a smaller batch",
                    self.max_binding
                ))));
            }
            let mut r = self.recorder();
            if let Some(old) = t.buffer.take() {
                r.destroy_buffer(&*self.api, old);
                t.capacity = 0;
            }
            t.buffer = Some(r.create_buffer(&*self.api, size, "activations")?);
            t.capacity = len;
        }
        t.len = len;
        Ok(())
    }

    fn embed(&self, table: &Matrix, tokens: &[TokenId], scale: f32, out: &mut GpuTensor) {
        let m = self.weights.matrix(table);
        let Some(ids) = self.upload(bytes(tokens)) else { return };
        for s in &m.slices {
            let params = [
                s.rows as u32,
                m.cols as u32,
                tokens.len() as u32,
                m.row_bytes as u32,
                s.row0 as u32,
                scale.to_bits(),
            ];
            self.dispatch(
                self.pipelines.embed,
                &[
                    Bind::Buffer(s.buffer),
                    Bind::Uploaded(ids),
                    Bind::Buffer(out.buffer()),
                    Bind::Upload(bytes(&params)),
                ],
                [(m.cols / 32).div_ceil(64) as u32, tokens.len() as u32, 1],
            );
        }
    }

    fn project(
        &self,
        x: &GpuTensor,
        norm: &[f32],
        eps: f32,
        _normed: &mut GpuTensor,
        outs: &mut [(&Matrix, &mut GpuTensor)],
    ) {
        // Runs of the outputs whose matrices are stacked on the device, the longest first.
        let mut i = 0;
        while i < outs.len() {
            let (m, run) = (i + 1..=outs.len())
                .rev()
                .find_map(|j| {
                    let ms: Vec<&Matrix> = outs[i..j].iter().map(|(m, _)| *m).collect();
                    self.weights.stacked(&ms).map(|m| (m, j - i))
                })
                .expect("every matrix is on the device, alone or stacked");
            let targets: Vec<&GpuTensor> = outs[i..i + run].iter().map(|(_, t)| &**t).collect();
            self.run_matmul(m, x, Some((norm, eps)), false, &targets);
            i += run;
        }
    }

    fn gated_ffn(
        &self,
        x: &GpuTensor,
        norm: &[f32],
        eps: f32,
        gate: &Matrix,
        up: &Matrix,
        _normed: &mut GpuTensor,
        up_out: &mut GpuTensor,
        out: &mut GpuTensor,
    ) {
        if let Some(m) = self.weights.stacked(&[gate, up]) {
            return self.run_matmul(m, x, Some((norm, eps)), true, &[out]);
        }
        self.run_matmul(self.weights.matrix(gate), x, Some((norm, eps)), false, &[out]);
        self.run_matmul(self.weights.matrix(up), x, Some((norm, eps)), false, &[up_out]);
        let params = [out.len as u32];
        self.dispatch(
            self.pipelines.geglu,
            &[
                Bind::Buffer(out.buffer()),
                Bind::Buffer(up_out.buffer()),
                Bind::Upload(bytes(&params)),
            ],
            grid(out.len.div_ceil(256), self.max_groups),
        );
    }

    fn matmul(&self, w: &Matrix, x: &GpuTensor, out: &mut GpuTensor) {
        self.run_matmul(self.weights.matrix(w), x, None, false, &[out]);
    }

    fn residual(&self, x: &mut GpuTensor, y: &GpuTensor, norm: Option<&[f32]>, eps: f32) {
        let width = norm.map_or(x.len, |w| w.len());
        let rows = x.len / width;
        let params = [width as u32, rows as u32, eps.to_bits()];
        let (pipeline, norm) = match norm {
            Some(w) => (self.pipelines.residual_normed, Bind::Buffer(self.weights.vector(w))),
            None => (self.pipelines.residual, Bind::Skip),
        };
        self.dispatch(
            pipeline,
            &[
                Bind::Buffer(x.buffer()),
                Bind::Buffer(y.buffer()),
                Bind::Upload(bytes(&params)),
                norm,
            ],
            grid(rows, self.max_groups),
        );
    }

    fn attention(
        &self,
        c: &Config,
        l: usize,
        head_norms: Option<(&[f32], &[f32])>,
        rope: &Rope,
        seqs: &mut [SeqInput],
        q: &mut GpuTensor,
        k: &mut GpuTensor,
        v: &GpuTensor,
        tables: &mut StepTables,
        out: &mut GpuTensor,
    ) -> Result<(), ForwardError> {
        if l == 0 || tables.pages.is_none() {
            let mut tokens: Vec<[u32; 2]> = Vec::new(); // (n) position, table start
            let mut blocks: Vec<[u32; 2]> = Vec::new(); // per sequence and block: slots
            for s in seqs.iter() {
                let start = blocks.len() as u32;
                blocks.extend(s.cache.slots().map(|(g, l)| [g, l]));
                tokens.extend((s.cache.len()..s.cache.len() + s.tokens.len()).map(|p| [p as u32, start]));
            }
            let mut r = self.recorder();
            tables.pages = Some((
                r.upload(&*self.api, bytes(&tokens))?,
                r.upload(&*self.api, bytes(&blocks))?,
            ));
            tables.rotations.clear();
        }
        let (tokens, blocks) = tables.pages.expect("uploaded above");
        let rope_key = rope as *const Rope as usize;
        let cos_sin = match tables.rotations.iter().find(|(k, _)| *k == rope_key) {
            Some(&(_, binding)) => binding,
            None => {
                let positions = seqs.iter().flat_map(|s| s.cache.len()..s.cache.len() + s.tokens.len());
                let table: Vec<[f32; 2]> = positions.flat_map(|p| rope.cos_sin(p).map(|(c, s)| [c, s])).collect(); // (n, half)
                let binding = self.recorder().upload(&*self.api, bytes(&table))?;
                tables.rotations.push((rope_key, binding));
                binding
            }
        };
        let layout = seqs[0].cache.layout().clone();
        let (sliding, index) = layout.layer(l);
        let (n_global, n_sliding) = layout.part_layers();
        let n = q.len / c.q_dim();
        let params: [u32; 11] = [
            n as u32,
            c.kv_dim() as u32,
            c.head_dim as u32,
            c.n_heads as u32,
            c.n_kv_heads as u32,
            if sliding { n_sliding } else { n_global } as u32,
            index as u32,
            sliding as u32,
            if sliding {
                c.sliding_window.unwrap_or(0) as u32
            } else {
                0
            },
            c.attention_scale.to_bits(),
            c.rms_eps.to_bits(),
        ];
        let pool = if sliding { self.kv.buffers.1 } else { self.kv.buffers.0 };
        let params = self.recorder().upload(&*self.api, bytes(&params))?;
        let pages = [
            Bind::Uploaded(tokens),
            Bind::Uploaded(blocks),
            Bind::Buffer(pool),
            Bind::Uploaded(params),
        ];
        let norms = head_norms.map_or(Bind::Skip, |(q_norm, _)| Bind::Buffer(self.weights.vector(q_norm)));
        let input = [
            Bind::Buffer(q.buffer()),
            Bind::Buffer(k.buffer()),
            Bind::Buffer(v.buffer()),
            Bind::Uploaded(cos_sin),
            norms,
        ];
        self.dispatch(
            self.pipelines.attention_input,
            &[&pages[..], &input[..]].concat(),
            [n as u32, (c.n_heads + c.n_kv_heads) as u32, 1],
        );
        let attend = [Bind::Buffer(q.buffer()), Bind::Buffer(out.buffer())];
        self.dispatch(
            self.pipelines.attention,
            &[&pages[..], &attend[..]].concat(),
            [n as u32, c.n_heads as u32, 1],
        );
        Ok(())
    }

    fn gather_rows(&self, x: &GpuTensor, width: usize, rows: &[usize], out: &mut GpuTensor) {
        let rows: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let len = rows.len() * width;
        let params = [len as u32, width as u32];
        self.dispatch(
            self.pipelines.gather,
            &[
                Bind::Buffer(out.buffer()),
                Bind::Buffer(x.buffer()),
                Bind::Upload(bytes(&params)),
                Bind::Upload(bytes(&rows)),
            ],
            grid(len.div_ceil(256), self.max_groups),
        );
    }

    fn submit(&self) -> Result<(), ForwardError> {
        Ok(self.recorder().submit(&*self.api)?)
    }

    fn read(&self, t: &GpuTensor, range: std::ops::Range<usize>) -> Result<Vec<f32>, ForwardError> {
        let raw = self
            .api
            .read_buffer(t.buffer(), (range.start * 4) as u64, (range.len() * 4) as u64)?;
        Ok(raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}
