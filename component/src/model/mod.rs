//! The transformer: weights, hyperparameters and the forward pass.
//!
//! One forward function serves every supported architecture; what differs between them
//! (norm placement, activation, RoPE bases, sliding windows) comes from [`Config`] and from
//! which optional tensors a layer has.

mod attention;
mod config;
mod cpu;
mod device;
mod forward;
mod gpu;
mod kv_cache;
mod ops;
mod rope;
mod weights;

pub use config::{Architecture, Config, ConfigError, LoadOptions, RopeScalingOptions};
pub use cpu::Cpu;
pub use device::{Device, Scratch};
pub use forward::{ForwardError, Logits, SeqInput, SeqLogits, TopLogits, TOP_K};
pub use gpu::Gpu;
pub use kv_cache::{Block, KvCache, KvLayout, KvMemory, KvSlots, KvType, NoKvMemory, BLOCK};
pub use rope::{Rope, RopeScaling, RopeScalingKind};
pub use weights::{Matrix, WeightError};

use crate::gguf::Gguf;
use crate::gpu::{AdapterInfo, GpuApi, GpuError};
use rill_kernels::KernelPath;
use std::sync::{Arc, Mutex};
use weights::Loader;

/// One transformer block's weights. Optional norms are the ones only some architectures have.
pub struct Layer {
    pub attn_norm: Vec<f32>,              // (dim)
    pub wq: Matrix,                       // (q_dim, dim)
    pub wk: Matrix,                       // (kv_dim, dim)
    pub wv: Matrix,                       // (kv_dim, dim)
    pub q_norm: Option<Vec<f32>>,         // (head_dim) Gemma 3: RMSNorm of each query head
    pub k_norm: Option<Vec<f32>>,         // (head_dim)
    pub wo: Matrix,                       // (dim, q_dim)
    pub post_attn_norm: Option<Vec<f32>>, // (dim) Gemma: norm of the attention output
    pub ffn_norm: Vec<f32>,               // (dim)
    pub w_gate: Matrix,                   // (ffn_dim, dim)
    pub w_up: Matrix,                     // (ffn_dim, dim)
    pub w_down: Matrix,                   // (dim, ffn_dim)
    pub post_ffn_norm: Option<Vec<f32>>,  // (dim)
}

pub struct Model {
    pub config: Config,
    pub path: KernelPath,
    pub token_embd: Matrix, // (vocab, dim)
    pub layers: Vec<Layer>,
    pub output_norm: Vec<f32>, // (dim)
    pub output: Matrix,        // (vocab, dim); Gemma ties it to token_embd
    /// Position rotations of global layers (scaled for context extension) and sliding ones.
    pub rope_global: Rope,
    pub rope_local: Rope,
    /// The KV cache layouts: f16, then Q8_0 when the rows allow it.
    kv_layouts: Vec<Arc<KvLayout>>,
    /// What the KV blocks of all its caches hold, and may hold.
    pub kv_memory: Arc<KvMemory>,
    /// The forward pass's activations, kept from one step to the next (steps run one at a time).
    scratch: Mutex<Scratch<Cpu>>,
    /// The GPU the forward pass runs on instead, when the model was put on one.
    gpu: Option<OnGpu>,
}

/// A model on a GPU: the device (weights, kernels, KV pools) and its activations.
struct OnGpu {
    device: Gpu,
    scratch: Mutex<Scratch<Gpu>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightError),
}

impl Model {
    /// Builds the model over `file` (the whole GGUF file, parsed as `gguf`), kernels on `path`.
    pub fn new(gguf: &Gguf, file: Arc<Vec<u8>>, path: KernelPath, options: &LoadOptions) -> Result<Model, ModelError> {
        let c = Config::from_gguf(gguf, options)?;
        let w = Loader { gguf, file };
        let (dim, q, kv, ffn, hd) = (c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim, c.head_dim);
        let layers = (0..c.n_layers)
            .map(|l| {
                let name = |t: &str| format!("blk.{l}.{t}.weight");
                let optional = |t: &str, len| {
                    if gguf.tensor(&name(t)).is_some() {
                        w.vector(&name(t), len).map(Some)
                    } else {
                        Ok(None)
                    }
                };
                Ok(Layer {
                    attn_norm: w.vector(&name("attn_norm"), dim)?,
                    wq: w.matrix(&name("attn_q"), q, dim)?,
                    wk: w.matrix(&name("attn_k"), kv, dim)?,
                    wv: w.matrix(&name("attn_v"), kv, dim)?,
                    q_norm: optional("attn_q_norm", hd)?,
                    k_norm: optional("attn_k_norm", hd)?,
                    wo: w.matrix(&name("attn_output"), dim, q)?,
                    post_attn_norm: optional("post_attention_norm", dim)?,
                    ffn_norm: w.vector(&name("ffn_norm"), dim)?,
                    w_gate: w.matrix(&name("ffn_gate"), ffn, dim)?,
                    w_up: w.matrix(&name("ffn_up"), ffn, dim)?,
                    w_down: w.matrix(&name("ffn_down"), dim, ffn)?,
                    post_ffn_norm: optional("post_ffw_norm", dim)?,
                })
            })
            .collect::<Result<Vec<_>, WeightError>>()?;
        let token_embd = w.matrix("token_embd.weight", c.vocab_size, dim)?;
        let output = if gguf.tensor("output.weight").is_some() {
            w.matrix("output.weight", c.vocab_size, dim)?
        } else {
            w.matrix("token_embd.weight", c.vocab_size, dim)?
        };
        let sliding: Vec<bool> = (0..c.n_layers).map(|l| !c.is_global(l)).collect();
        let window = c.sliding_window.unwrap_or(0);
        let kv_memory = Arc::new(KvMemory::default());
        let kv_layouts = [KvType::F16, KvType::Q8_0]
            .into_iter()
            .filter_map(|ty| KvLayout::new(ty, c.kv_dim(), &sliding, window, kv_memory.clone()))
            .map(Arc::new)
            .collect();
        let rope_global = Rope::new(hd, c.rope_base_global, &c.rope_scaling);
        let rope_local = Rope::new(
            hd,
            c.rope_base_local,
            &RopeScaling {
                attn_factor: c.rope_scaling.attn_factor,
                ..RopeScaling::none(c.rope_scaling.original_context)
            },
        );
        Ok(Model {
            output_norm: w.vector("output_norm.weight", dim)?,
            config: c,
            path,
            token_embd,
            layers,
            output,
            rope_global,
            rope_local,
            kv_layouts,
            kv_memory,
            scratch: Mutex::default(),
            gpu: None,
        })
    }

    /// Every weight matrix (the tied output matrix twice).
    pub fn matrices(&self) -> impl Iterator<Item = &Matrix> {
        [&self.token_embd, &self.output].into_iter().chain(
            self.layers
                .iter()
                .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]),
        )
    }

    /// Moves the forward pass onto `api`'s GPU: compiles the kernels, uploads the weights
    /// (`progress` is told the bytes so far) and keeps the KV cache on the device from now on
    /// (f16, and Q8_0 where the model's heads are a multiple of 64 values). Call before any
    /// cache is made.
    pub fn use_gpu(&mut self, api: Arc<dyn GpuApi>, progress: &mut dyn FnMut(u64)) -> Result<(), GpuError> {
        let types: Vec<(KvType, (u64, u64))> = self
            .kv_layouts
            .iter()
            .map(|l| {
                let (global, sliding) = l.block_bytes();
                (l.ty, (global as u64, sliding as u64))
            })
            .collect();
        let device = Gpu::new(api, self, &types, progress)?;
        self.kv_layouts = self
            .kv_layouts
            .iter()
            .filter_map(|l| Some(Arc::new(l.on_device(device.kv_pool(l.ty)?))))
            .collect();
        self.gpu = Some(OnGpu {
            device,
            scratch: Mutex::default(),
        });
        Ok(())
    }

    /// The adapter the model runs on, when on a GPU.
    pub fn gpu(&self) -> Option<&AdapterInfo> {
        self.gpu.as_ref().map(|g| &g.device.info)
    }

    /// Where a cache of type `ty` keeps each layer; `None` when `ty` cannot hold this
    /// model's rows (Q8_0 needs a multiple of 32 values).
    pub fn kv_layout(&self, ty: KvType) -> Option<Arc<KvLayout>> {
        self.kv_layouts.iter().find(|l| l.ty == ty).cloned()
    }

    /// An empty KV cache of type `ty` for up to `capacity` positions (at most the model's
    /// context length).
    pub fn new_cache(&self, ty: KvType, capacity: usize) -> Option<KvCache> {
        Some(KvCache::new(
            self.kv_layout(ty)?,
            capacity.min(self.config.context_length),
        ))
    }
}
