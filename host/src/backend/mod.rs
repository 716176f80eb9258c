//! Where the engine runs: as the WIT component inside wasmtime (the product), or as the engine
//! crate natively in this process (for comparison). Commands talk to one trait.

pub mod component;
pub mod native;

use crate::gpu::{self, AdapterChoice, WgpuDevice};
use clap::ValueEnum;
use rill_engine::chat::Message;
use rill_engine::engine::{FinishReason, Timings, Usage};
use rill_engine::gpu::GpuError;
use rill_engine::model::LoadOptions;
use rill_engine::scheduler::StepLimits;
use rill_engine::{EngineError, GenerateParams, TokenEvent};
use std::path::Path;
use std::sync::Arc;

/// What a generation is started from.
pub enum PromptInput<'a> {
    Text(&'a str),
    /// Messages, rendered with the model's chat template, ready for the assistant's reply.
    Chat(&'a [Message]),
    /// Token ids, used as given.
    Tokens(&'a [u32]),
}

/// A generation, as a backend knows it.
pub type SeqHandle = u64;

/// Why a call into the engine failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineFailure {
    /// The engine refused or failed the call (the WIT `error`, the same kinds end to end); the
    /// instance is fine.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The component trapped: the instance must be replaced.
    #[error("the engine component trapped: {0}")]
    Trapped(String),
}

/// What a call into the engine returns.
pub type EngineResult<T> = Result<T, EngineFailure>;

/// A handle the backend does not know: the caller's mistake, reported as the engine would.
fn no_generation(h: SeqHandle) -> EngineError {
    EngineError::InvalidArgument(format!("no generation {h}"))
}

/// Bytes of KV cache: held, allowed, and held by the prefix cache.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvMemory {
    pub used: u64,
    pub budget: u64,
    pub prefix_cache: u64,
}

/// What one batched step did for one generation (the WIT's `stepped`).
pub struct Progress {
    pub handle: SeqHandle,
    /// The token it made; none while its prompt is read, or when it ended without one.
    pub event: Option<TokenEvent>,
    /// Set when it ended in this step: finished, or failed (it takes no more steps either way).
    pub end: Option<Result<FinishReason, EngineError>>,
}

/// How a generation ended.
pub struct Outcome {
    pub usage: Usage,
    pub timings: Timings,
    pub finish: Option<FinishReason>,
}

pub trait Backend {
    /// "component" or "native".
    fn name(&self) -> &'static str;
    /// The engine's linear memory, where it has one of its own (the component).
    fn memory_bytes(&self) -> Option<u64> {
        None
    }
    /// Test builds only: returns a trigger that makes the engine trap, as a bug would, at its
    /// next check (callable from inside a generation's token callback).
    #[cfg(feature = "fault-injection")]
    fn arm_trap(&mut self) -> Box<dyn Fn() + Send> {
        Box::new(|| {})
    }
    /// The kernels the engine uses: "simd128", "avx512vnni", "avx2" or "scalar".
    fn kernel_path(&mut self) -> EngineResult<String>;
    /// Tokens in the model's vocabulary.
    fn vocab_size(&mut self) -> EngineResult<usize>;
    /// KV cache memory of the model's generations and prefix cache.
    fn kv_memory(&mut self) -> EngineResult<KvMemory>;
    /// Caps it: past the cap the engine empties the prefix cache and preempts the latest
    /// started generations (they recompute later, unchanged) instead of failing.
    fn set_kv_budget(&mut self, bytes: u64) -> EngineResult<()>;
    fn tokenize(&mut self, text: &str, add_bos: bool, parse_special: bool) -> EngineResult<Vec<u32>>;
    /// The token ids a generation of `prompt` reads (a chat rendered with the model's template).
    fn prompt_tokens(&mut self, prompt: PromptInput) -> EngineResult<Vec<u32>>;
    /// Test builds only: a trigger that loses the GPU the engine runs on, as a driver reset
    /// would; `None` when it runs on the CPU.
    #[cfg(feature = "fault-injection")]
    fn arm_gpu_loss(&mut self) -> Option<Box<dyn Fn() + Send>> {
        None
    }
    fn top_logits(&mut self, tokens: &[u32], top: usize) -> EngineResult<Vec<Vec<(u32, f32)>>>;
    /// Starts a generation; `step` advances it, with the others started and not yet ended.
    fn start(&mut self, prompt: PromptInput, params: GenerateParams) -> EngineResult<SeqHandle>;
    /// One batched step for the oldest live generations within `limits` (the WIT's
    /// `model.step`): an entry for each that took part, in the order they started. A
    /// generation's failure is in its entry; an error here is the instance failing.
    fn step(&mut self, limits: StepLimits) -> EngineResult<Vec<Progress>>;
    /// Stops `h`: it takes no more steps.
    fn cancel(&mut self, h: SeqHandle) -> EngineResult<()>;
    /// Frees `h` (and its KV cache), returning how it went.
    fn finish(&mut self, h: SeqHandle) -> EngineResult<Outcome>;

    /// Runs one generation, alone, to its end, handing each token event to `on_event` as it
    /// arrives; an error from `on_event` cancels it.
    fn generate(
        &mut self,
        prompt: PromptInput,
        params: GenerateParams,
        on_event: &mut dyn FnMut(TokenEvent) -> anyhow::Result<()>,
    ) -> anyhow::Result<Outcome> {
        let h = self.start(prompt, params)?;
        loop {
            // A failing step is a trapped instance, which cannot be entered again.
            let Some(progress) = self.step(StepLimits::ONE)?.into_iter().find(|p| p.handle == h) else {
                anyhow::bail!("generation {h} was not stepped: another generation is live");
            };
            if let Some(event) = progress.event {
                if let Err(e) = on_event(event) {
                    let _ = self.cancel(h).and_then(|_| self.finish(h));
                    return Err(e);
                }
            }
            match progress.end {
                None => {}
                Some(Ok(_)) => return Ok(self.finish(h)?),
                Some(Err(e)) => {
                    let _ = self.finish(h);
                    return Err(EngineFailure::from(e).into());
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The engine component on a hardware GPU when there is one, else on the CPU.
    #[default]
    Auto,
    /// The engine component on the best GPU adapter, a software one (lavapipe) included.
    Gpu,
    /// The engine component in wasmtime, on the CPU.
    Component,
    /// The engine crate, natively, on the CPU.
    Native,
}

/// The GPU `kind` puts the engine on, or why none (for `Auto`, the reason it takes the CPU).
pub fn gpu_for(kind: BackendKind) -> Result<Option<Arc<WgpuDevice>>, GpuError> {
    match kind {
        BackendKind::Auto => Ok(gpu::open(AdapterChoice::Hardware).ok().map(Arc::new)),
        BackendKind::Gpu => gpu::open(AdapterChoice::Any).map(|d| Some(Arc::new(d))),
        BackendKind::Component | BackendKind::Native => Ok(None),
    }
}

/// Loads `model` on a backend, built with `options`; `memory_limit` (bytes) caps the
/// component's memory.
pub fn open(
    kind: BackendKind,
    model: &Path,
    options: &LoadOptions,
    memory_limit: Option<usize>,
) -> anyhow::Result<Box<dyn Backend>> {
    Ok(match kind {
        BackendKind::Native => Box::new(native::NativeBackend::load(model, options)?),
        _ => Box::new(component::ComponentBackend::load(
            model,
            options,
            memory_limit,
            gpu_for(kind)?,
        )?),
    })
}
