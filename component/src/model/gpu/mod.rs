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
use rill_kernels::{wgsl, QuantType};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
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
/// (position, start of its sequence's block table), and the block tables.
#[derive(Default)]
pub struct StepTables(Option<(Binding, Binding)>);

struct Pipelines {
    matmul: HashMap<QuantType, PipelineId>,
    embed: PipelineId,
    rms_norm: PipelineId,
    rms_norm_in_place: PipelineId,
    geglu: PipelineId,
    add: PipelineId,
    gather: PipelineId,
    rope: PipelineId,
    kv_store: PipelineId,
    attention: PipelineId,
}

impl Pipelines {
    /// Compiles the kernels `model` needs (a mat-mul for each of its weight formats).
    fn new(api: &dyn GpuApi, model: &Model) -> Result<Pipelines, GpuError> {
        let compile = |k: wgsl::Kernel| api.create_pipeline(&k.source, k.entry, k.entry);
        let compile_for = |k: wgsl::Kernel, ty: QuantType| api.create_pipeline(&k.source, k.entry, &format!("{} {ty}", k.entry));
        let unsupported = |ty: QuantType| GpuError::Validation(format!("no GPU kernel for {ty} weights"));
        let mut matmul = HashMap::new();
        for m in model.matrices() {
            if !matmul.contains_key(&m.ty) {
                matmul.insert(m.ty, compile_for(wgsl::matmul(m.ty).ok_or_else(|| unsupported(m.ty))?, m.ty)?);
            }
        }
        let embed_ty = model.token_embd.ty;
        Ok(Pipelines {
            matmul,
            embed: compile(wgsl::embed(embed_ty).ok_or_else(|| unsupported(embed_ty))?)?,
            rms_norm: compile(wgsl::rms_norm())?,
            rms_norm_in_place: compile(wgsl::rms_norm_in_place())?,
            geglu: compile(wgsl::geglu())?,
            add: compile(wgsl::add())?,
            gather: compile(wgsl::gather())?,
            rope: compile(wgsl::rope())?,
            kv_store: compile(wgsl::kv_store())?,
            attention: compile(wgsl::attention())?,
        })
    }
}

/// Slots in each KV pool, at most (the pools are one binding each).
const MAX_KV_SLOTS: u64 = 8192;
/// Rows a workgroup of the mat-mul takes; a slice has at most this many times the grid's
/// largest dimension.
const MATMUL_ROWS: usize = 8;
/// Logits buffers larger than this are let go after the step (all-position logits of a long
/// input); smaller ones are kept for the next.
const KEEP_BYTES: usize = 64 << 20;

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
        let kv = KvPool::new(kv_slot_bytes, (slots(kv_slot_bytes.0), slots(kv_slot_bytes.1)), |size, label| {
            recorder.create_buffer(&*api, size, label)
        })?;
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

    /// One value per invocation over `len` values: `pipeline` with its (a, b, params) bindings.
    fn elementwise(&self, pipeline: PipelineId, a: &GpuTensor, b: &GpuTensor, len: usize, width: usize) {
        let params = [len as u32, width as u32];
        self.dispatch(
            pipeline,
            &[Bind::Buffer(a.buffer()), Bind::Buffer(b.buffer()), Bind::Upload(bytes(&params))],
            grid(len.div_ceil(256), self.max_groups),
        );
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

    fn release(&self, t: &mut GpuTensor) {
        if t.capacity * 4 > KEEP_BYTES {
            if let Some(old) = t.buffer.take() {
                self.recorder().destroy_buffer(&*self.api, old);
            }
            *t = GpuTensor::default();
        }
    }

    fn embed(&self, table: &Matrix, tokens: &[TokenId], scale: f32, out: &mut GpuTensor) {
        let m = self.weights.matrix(table);
        let Some(ids) = self.upload(bytes(tokens)) else { return };
        for s in &m.slices {
            let params = [s.rows as u32, m.cols as u32, tokens.len() as u32, m.row_bytes as u32, s.row0 as u32, scale.to_bits()];
            self.dispatch(
                self.pipelines.embed,
                &[Bind::Buffer(s.buffer), Bind::Uploaded(ids), Bind::Buffer(out.buffer()), Bind::Upload(bytes(&params))],
                [(m.cols / 32).div_ceil(64) as u32, tokens.len() as u32, 1],
            );
        }
    }

    fn matmul(&self, w: &Matrix, x: &GpuTensor, out: &mut GpuTensor) {
        let m = self.weights.matrix(w);
        let n = x.len / m.cols;
        for s in &m.slices {
            let params = [s.rows as u32, m.cols as u32, n as u32, m.row_bytes as u32, s.row0 as u32, w.rows as u32];
            self.dispatch(
                self.pipelines.matmul[&m.ty],
                &[Bind::Buffer(s.buffer), Bind::Buffer(x.buffer()), Bind::Buffer(out.buffer()), Bind::Upload(bytes(&params))],
                [s.rows.div_ceil(MATMUL_ROWS) as u32, n.div_ceil(8) as u32, 1],
            );
        }
    }

    fn rms_norm(&self, x: &GpuTensor, w: &[f32], eps: f32, out: &mut GpuTensor) {
        let rows = x.len / w.len();
        let params = [w.len() as u32, rows as u32, eps.to_bits()];
        self.dispatch(
            self.pipelines.rms_norm,
            &[
                Bind::Buffer(self.weights.vector(w)),
                Bind::Buffer(x.buffer()),
                Bind::Upload(bytes(&params)),
                Bind::Buffer(out.buffer()),
            ],
            grid(rows, self.max_groups),
        );
    }

    fn rms_norm_in_place(&self, x: &mut GpuTensor, w: &[f32], eps: f32) {
        let rows = x.len / w.len();
        let params = [w.len() as u32, rows as u32, eps.to_bits()];
        self.dispatch(
            self.pipelines.rms_norm_in_place,
            &[Bind::Buffer(self.weights.vector(w)), Bind::Buffer(x.buffer()), Bind::Upload(bytes(&params))],
            grid(rows, self.max_groups),
        );
    }

    fn rope(&self, rope: &Rope, positions: &[usize], q: &mut GpuTensor, k: &mut GpuTensor) {
        let table: Vec<[f32; 2]> = positions
            .iter()
            .flat_map(|&p| rope.cos_sin(p).map(|(c, s)| [c, s]))
            .collect(); // (n, half)
        let n = positions.len();
        let half = table.len() / n;
        let head_dim = 2 * half;
        let (q_heads, kv_heads) = (q.len / n / head_dim, k.len / n / head_dim);
        let params = [n as u32, head_dim as u32, q_heads as u32, kv_heads as u32];
        self.dispatch(
            self.pipelines.rope,
            &[
                Bind::Buffer(q.buffer()),
                Bind::Buffer(k.buffer()),
                Bind::Upload(bytes(&table)),
                Bind::Upload(bytes(&params)),
            ],
            grid((n * (q_heads + kv_heads) * half).div_ceil(256), self.max_groups),
        );
    }

    fn attention(
        &self,
        c: &Config,
        l: usize,
        seqs: &mut [SeqInput],
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        tables: &mut StepTables,
        out: &mut GpuTensor,
    ) -> Result<(), ForwardError> {
        if l == 0 || tables.0.is_none() {
            let mut tokens: Vec<[u32; 2]> = Vec::new(); // (n) position, table start
            let mut blocks: Vec<[u32; 2]> = Vec::new(); // per sequence and block: slots
            for s in seqs.iter() {
                let start = blocks.len() as u32;
                blocks.extend(s.cache.slots().map(|(g, l)| [g, l]));
                tokens.extend((s.cache.len()..s.cache.len() + s.tokens.len()).map(|p| [p as u32, start]));
            }
            let mut r = self.recorder();
            tables.0 = Some((r.upload(&*self.api, bytes(&tokens))?, r.upload(&*self.api, bytes(&blocks))?));
        }
        let (tokens, blocks) = tables.0.expect("uploaded above");
        let layout = seqs[0].cache.layout().clone();
        let (sliding, index) = layout.layer(l);
        let (n_global, n_sliding) = layout.part_layers();
        let n = q.len / c.q_dim();
        let params: [u32; 10] = [
            n as u32,
            c.kv_dim() as u32,
            c.head_dim as u32,
            c.n_heads as u32,
            c.n_kv_heads as u32,
            if sliding { n_sliding } else { n_global } as u32,
            index as u32,
            sliding as u32,
            if sliding { c.sliding_window.unwrap_or(0) as u32 } else { 0 },
            c.attention_scale.to_bits(),
        ];
        let pool = if sliding { self.kv.buffers.1 } else { self.kv.buffers.0 };
        let params = self.upload(bytes(&params)).ok_or(ForwardError::Gpu(GpuError::OutOfMemory("uploads".into())))?;
        let pages = [Bind::Uploaded(tokens), Bind::Uploaded(blocks), Bind::Buffer(pool), Bind::Uploaded(params)];
        let store = [Bind::Buffer(k.buffer()), Bind::Buffer(v.buffer())];
        self.dispatch(
            self.pipelines.kv_store,
            &[&pages[..], &store[..]].concat(),
            [(c.kv_dim() / 2).div_ceil(256) as u32, n as u32, 1],
        );
        let attend = [Bind::Buffer(q.buffer()), Bind::Buffer(out.buffer())];
        self.dispatch(self.pipelines.attention, &[&pages[..], &attend[..]].concat(), [n as u32, c.n_heads as u32, 1]);
        Ok(())
    }

    fn geglu(&self, gate: &mut GpuTensor, up: &GpuTensor) {
        self.elementwise(self.pipelines.geglu, gate, up, gate.len, 0);
    }

    fn add(&self, x: &mut GpuTensor, y: &GpuTensor) {
        self.elementwise(self.pipelines.add, x, y, x.len, 0);
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
        Ok(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }
}
