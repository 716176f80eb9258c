//! The forward pass's operations on a GPU, through `rill:gpu` ([`GpuApi`]): weights uploaded
//! once, activations and the KV cache kept on the device, the WGSL kernels of `rill-kernels`.
//! A step's operations are recorded into one pass and submitted once ([`Device::submit`]);
//! only the logits come back.

mod kv_pool;
mod recorder;
mod weights;

use super::device::Device;
use super::forward::{ForwardError, SeqInput, TopLogits};
use super::{Config, KvType, Matrix, Model, Rope};
use crate::gpu::{AdapterInfo, Binding, BufferId, GpuApi, GpuError, PipelineId};
use crate::tokenizer::TokenId;
pub use kv_pool::KvPool;
use recorder::{Bind, Recorder};
use rill_kernels::wgsl::{self, MatmulVariant, Residual, TOP_K, TOP_K_RUN};
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
    top_k: PipelineId,
    top_k_merge: PipelineId,
}

impl Pipelines {
    fn new(api: &dyn GpuApi, model: &Model) -> Result<Pipelines, GpuError> {
        let compile = |k: wgsl::Kernel| api.create_pipeline(&k.source, k.entry, k.entry);
        let embed_ty = model.token_embd.ty;
        let embed = wgsl::embed(embed_ty).ok_or_else(|| unsupported(embed_ty))?;
        Ok(Pipelines {
            matmul: Mutex::default(),
            embed: compile(embed)?,
            residual: compile(wgsl::residual(false))?,
            residual_normed: compile(wgsl::residual(true))?,
            geglu: compile(wgsl::geglu())?,
            gather: compile(wgsl::gather())?,
            top_k: compile(wgsl::top_k(false))?,
            top_k_merge: compile(wgsl::top_k(true))?,
        })
    }
}

fn unsupported(ty: QuantType) -> GpuError {
    GpuError::Validation(format!("no GPU kernel for {ty} weights"))
}

/// A KV cache format the device keeps: its pools, and the attention kernels that read them.
struct KvOnDevice {
    ty: KvType,
    pool: Arc<KvPool>,
    /// Per-head work and storing the keys and values; attention; both at once (decode).
    input: PipelineId,
    attend: PipelineId,
    fused: PipelineId,
}

impl KvOnDevice {
    /// Pools for parts of `slot_bytes` (global, sliding), and the kernels for `ty`, where the
    /// kernels can keep that type for `model` (Q8_0 rows need heads of a multiple of 64 values).
    fn new(
        api: &dyn GpuApi,
        recorder: &mut Recorder,
        model: &Model,
        ty: KvType,
        slot_bytes: (u64, u64),
        max_binding: u64,
    ) -> Result<Option<KvOnDevice>, GpuError> {
        if ty == KvType::Q8_0 && !model.config.head_dim.is_multiple_of(64) {
            return Ok(None);
        }
        let norms = model.layers.iter().any(|l| l.q_norm.is_some());
        let compile = |k: Option<wgsl::Kernel>| {
            let k = k.ok_or_else(|| GpuError::Validation(format!("no GPU kernels for a {ty:?} KV cache")))?;
            api.create_pipeline(&k.source, k.entry, k.entry)
        };
        let q = ty.quant_type();
        let (input, attend, fused) = (
            compile(wgsl::attention_input(norms, q))?,
            compile(wgsl::attention(q))?,
            compile(wgsl::attention_fused(norms, q))?,
        );
        let slots = |bytes: u64| (max_binding / bytes.max(1)).min(MAX_KV_SLOTS) as u32;
        let pool = KvPool::new(slot_bytes, (slots(slot_bytes.0), slots(slot_bytes.1)), |size, label| {
            recorder.create_buffer(api, size, label)
        })?;
        Ok(Some(KvOnDevice {
            ty,
            pool: Arc::new(pool),
            input,
            attend,
            fused,
        }))
    }
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
    kv: Vec<KvOnDevice>,
    recorder: Mutex<Recorder>,
    /// The residual connection recorded last, until a mat-mul folds it in or it runs alone.
    pending: Mutex<Option<PendingResidual>>,
    /// The residual stream's other buffer: each connection writes x anew from the last x.
    spare: Mutex<GpuTensor>,
    max_binding: u64,
    max_groups: u32,
}

/// A residual connection not yet run: `to` = `from` + RMSNorm(`y`)·`norm` (or + `y`), `rows`
/// rows of `width`.
#[derive(Clone, Copy)]
struct PendingResidual {
    to: BufferId,
    from: BufferId,
    y: BufferId,
    norm: Option<BufferId>,
    eps: f32,
    width: usize,
    rows: usize,
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
    /// the bytes so far) and makes KV pools for each of `kv_types`, whose parts take
    /// (global, sliding) bytes, where the device can keep that type.
    pub fn new(
        api: Arc<dyn GpuApi>,
        model: &Model,
        kv_types: &[(KvType, (u64, u64))],
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
        let mut kv = Vec::new();
        for &(ty, slot_bytes) in kv_types {
            kv.extend(KvOnDevice::new(
                &*api,
                &mut recorder,
                model,
                ty,
                slot_bytes,
                max_binding,
            )?);
        }
        Ok(Gpu {
            info: api.adapter_info(),
            api,
            pipelines,
            weights,
            kv,
            recorder: Mutex::new(recorder),
            pending: Mutex::default(),
            spare: Mutex::default(),
            max_binding,
            max_groups: limits.max_compute_workgroups_per_dimension,
        })
    }

    /// The pools of the device's KV cache of type `ty`, if it keeps that type.
    pub fn kv_pool(&self, ty: KvType) -> Option<Arc<KvPool>> {
        self.kv.iter().find(|k| k.ty == ty).map(|k| k.pool.clone())
    }

    fn recorder(&self) -> MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dispatch(&self, pipeline: PipelineId, binds: &[Bind], groups: [u32; 3]) {
        self.recorder().dispatch(&*self.api, pipeline, binds, groups);
    }

    /// Runs the pending residual connection on its own, where no mat-mul folded it in.
    fn settle(&self) {
        let Some(r) = self.pending.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let params = [r.width as u32, r.rows as u32, r.eps.to_bits()];
        let (pipeline, norm) = match r.norm {
            Some(w) => (self.pipelines.residual_normed, Bind::Buffer(w)),
            None => (self.pipelines.residual, Bind::Skip),
        };
        self.dispatch(
            pipeline,
            &[
                Bind::Buffer(r.to),
                Bind::Buffer(r.y),
                Bind::Upload(bytes(&params)),
                norm,
                Bind::Buffer(r.from),
            ],
            grid(r.rows, self.max_groups),
        );
    }

    /// The pending residual connection, for a mat-mul over `x` normed by `norm` to fold in
    /// (it writes x as it reads it); `None` after running it alone where it cannot.
    fn fold_residual(&self, m: &DeviceMatrix, x: &GpuTensor, norm: Option<(&[f32], f32)>) -> Option<PendingResidual> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let foldable = |r: &PendingResidual| match norm {
            // One slice, so that one dispatch writes x; the same eps for both norms.
            Some((_, eps)) => {
                r.to == x.buffer() && m.slices.len() == 1 && r.eps == eps && (r.norm.is_none() || r.width == m.cols)
            }
            None => false,
        };
        if let Some(r) = pending.take_if(|r| foldable(r)) {
            return Some(r);
        }
        drop(pending);
        self.settle();
        None
    }

    /// Makes `t` hold `len` values (see [`Device::resize`]).
    fn grow(&self, t: &mut GpuTensor, len: usize) -> Result<(), GpuError> {
        if len > t.capacity {
            let size = (len * 4) as u64;
            if size > self.max_binding {
                return Err(GpuError::OutOfMemory(format!(
                    "{size} bytes of activations are more than the GPU binds at once ({} bytes): use a smaller batch",
                    self.max_binding
                )));
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
        let folded = self.fold_residual(m, x, norm);
        let variant = MatmulVariant {
            normed: norm.is_some(),
            outputs: outs.len() as u32,
            geglu,
            residual: match folded {
                None => Residual::None,
                Some(PendingResidual { norm: None, .. }) => Residual::Plain,
                Some(_) => Residual::Normed,
            },
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
            if let Some(r) = folded {
                binds.resize(7, Bind::Skip);
                binds.extend([
                    Bind::Buffer(r.from),
                    Bind::Buffer(r.y),
                    r.norm.map_or(Bind::Skip, Bind::Buffer),
                ]);
            }
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
        Ok(self.grow(t, len)?)
    }

    fn embed(&self, table: &Matrix, tokens: &[TokenId], scale: f32, out: &mut GpuTensor) {
        self.settle();
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

    /// Recorded, not run: the next normed mat-mul over x folds it in (saving a dispatch a
    /// block), or it runs alone before whatever comes first.
    fn residual(&self, x: &mut GpuTensor, y: &GpuTensor, norm: Option<&[f32]>, eps: f32) {
        self.settle();
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.grow(&mut spare, x.len) {
            return self.recorder().fail(e);
        }
        std::mem::swap(&mut *spare, x);
        (x.len, spare.len) = (spare.len, x.len);
        let width = norm.map_or(x.len, |w| w.len());
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(PendingResidual {
            to: x.buffer(),
            from: spare.buffer(),
            y: y.buffer(),
            norm: norm.map(|w| self.weights.vector(w)),
            eps,
            width,
            rows: x.len / width,
        });
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
        let kv = self
            .kv
            .iter()
            .find(|k| k.ty == layout.ty)
            .ok_or_else(|| GpuError::Validation(format!("the GPU keeps no {:?} KV cache", layout.ty)))?;
        let pool = if sliding { kv.pool.buffers.1 } else { kv.pool.buffers.0 };
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
        if n == seqs.len() {
            // A decode step: one dispatch readies each token's own query, key and value and attends.
            let fused = [&pages[..], &input[..], &[Bind::Buffer(out.buffer())]].concat();
            self.dispatch(kv.fused, &fused, [n as u32, c.n_heads as u32, 1]);
            return Ok(());
        }
        self.dispatch(
            kv.input,
            &[&pages[..], &input[..]].concat(),
            [n as u32, (c.n_heads + c.n_kv_heads) as u32, 1],
        );
        let attend = [Bind::Buffer(q.buffer()), Bind::Buffer(out.buffer())];
        self.dispatch(
            kv.attend,
            &[&pages[..], &attend[..]].concat(),
            [n as u32, c.n_heads as u32, 1],
        );
        Ok(())
    }

    fn gather_rows(&self, x: &GpuTensor, width: usize, rows: &[usize], out: &mut GpuTensor) {
        self.settle();
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

    fn top_logits(
        &self,
        logits: &GpuTensor,
        vocab: usize,
        room: &mut [GpuTensor; 2],
    ) -> Result<Option<Vec<TopLogits>>, ForwardError> {
        // Each pass writes (rows, runs, TOP_K) candidates as (value bits, id), then (rows, runs)
        // (max, sum) pairs, into one of `room`'s two buffers, and the next pass reads it.
        let rows = logits.len / vocab;
        let pass_len = |runs: usize| rows * runs * (2 * TOP_K + 2);
        let mut runs = vocab.div_ceil(TOP_K_RUN);
        let [a, b] = room;
        self.resize(a, pass_len(runs))?;
        self.resize(b, pass_len(runs.div_ceil(TOP_K_RUN / TOP_K)))?;
        let outputs = |t: &GpuTensor, runs: usize| {
            let candidates = (rows * runs * TOP_K * 8) as u64;
            [
                Bind::Uploaded(Binding {
                    buffer: t.buffer(),
                    offset: 0,
                    size: candidates,
                }),
                Bind::Uploaded(Binding {
                    buffer: t.buffer(),
                    offset: candidates,
                    size: (rows * runs * 8) as u64,
                }),
            ]
        };
        let [top, lse] = outputs(a, runs);
        let params = [vocab as u32, runs as u32];
        self.dispatch(
            self.pipelines.top_k,
            &[Bind::Upload(bytes(&params)), top, lse, Bind::Buffer(logits.buffer())],
            [runs as u32, rows as u32, 1],
        );
        let (mut from, mut to) = (&*a, &*b);
        while runs > 1 {
            let merged = runs.div_ceil(TOP_K_RUN / TOP_K);
            let [top_in, lse_in] = outputs(from, runs);
            let [top, lse] = outputs(to, merged);
            let params = [runs as u32, merged as u32];
            self.dispatch(
                self.pipelines.top_k_merge,
                &[Bind::Upload(bytes(&params)), top, lse, Bind::Skip, top_in, lse_in],
                [merged as u32, rows as u32, 1],
            );
            (from, to) = (to, from);
            runs = merged;
        }
        self.submit()?;
        let raw = self
            .api
            .read_buffer(from.buffer(), 0, (rows * (TOP_K + 1) * 8) as u64)?;
        let words: Vec<u32> = raw
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let (candidates, sums) = words.split_at(rows * TOP_K * 2);
        Ok(Some(
            candidates
                .chunks_exact(TOP_K * 2)
                .zip(sums.chunks_exact(2))
                .map(|(pairs, sum)| TopLogits {
                    candidates: pairs.chunks_exact(2).map(|p| (p[1], f32::from_bits(p[0]))).collect(),
                    log_sum_exp: f32::from_bits(sum[0]) + f32::from_bits(sum[1]).ln(),
                })
                .collect(),
        ))
    }

    fn submit(&self) -> Result<(), ForwardError> {
        self.settle();
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
