//! The engine component (`rill_engine.wasm`, built by build.rs and embedded in `rill`) running
//! in wasmtime: compiled once and cached on disk, fed the GGUF file in chunks, pumped for
//! token events.

use super::{no_generation, Backend, EngineFailure, EngineResult, KvMemory, Outcome, Progress, PromptInput, SeqHandle};
use crate::gpu::wit::{GpuHost, HasGpu};
use crate::gpu::WgpuDevice;
use anyhow::{anyhow, Context};
use bindings::rill::llm::types;
use indicatif::{ProgressBar, ProgressStyle};
use rill_engine::engine::{FinishReason, Timings, Usage};
use rill_engine::gpu::{GpuApi, GpuError};
use rill_engine::model::{KvType, LoadOptions, RopeScalingKind};
use rill_engine::scheduler::StepLimits;
use rill_engine::{ContextPolicy, EngineError, GenerateParams, TokenEvent, TokenLogprob};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Linker, ResourceAny, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        world: "engine",
        path: "../wit",
        imports: { default: trappable },
        with: {
            "rill:gpu/webgpu.gpu-device": crate::gpu::wit::DeviceHandle,
            "rill:gpu/webgpu.gpu-buffer": rill_engine::gpu::BufferId,
            "rill:gpu/webgpu.gpu-compute-pipeline": rill_engine::gpu::PipelineId,
            "rill:gpu/webgpu.gpu-bind-group": rill_engine::gpu::BindGroupId,
            "rill:gpu/webgpu.gpu-compute-pass": crate::gpu::wit::PassHandle,
        },
    });
}

/// The engine component, built for this `rill` by build.rs.
pub const ENGINE_WASM: &[u8] = include_bytes!(env!("RILL_ENGINE_WASM"));
/// The wasmtime the engine runs on (pinned with `=` in host/Cargo.toml; keep the two equal).
pub const WASMTIME_VERSION: &str = "48.0.8";
/// Bytes per `loader.push` call.
const CHUNK: usize = 4 << 20;

/// Host state of the store: WASI (stderr only), the memory limit and the GPU the engine gets.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: MemoryLimiter,
    /// The engine's device, or why it has none (`rill:gpu`'s `get-device`).
    gpu: Result<Arc<WgpuDevice>, GpuError>,
}

/// wasmtime's `StoreLimits`, also remembering how large the guest's memory has grown.
struct MemoryLimiter {
    limits: StoreLimits,
    memory_bytes: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes = desired;
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

pub struct ComponentBackend {
    store: Store<State>,
    engine: bindings::Engine,
    model: ResourceAny,
    /// Live generations, by their `id` (the host's handle).
    generations: HashMap<SeqHandle, ResourceAny>,
    /// The adapter the engine computes on, when it was given one.
    on_gpu: Option<String>,
}

fn load_options(options: &LoadOptions) -> types::LoadOptions {
    types::LoadOptions {
        rope_scaling: options.rope_scaling.map(|r| types::RopeScaling {
            kind: match r.kind {
                RopeScalingKind::None => types::RopeScalingKind::None,
                RopeScalingKind::Linear => types::RopeScalingKind::Linear,
                RopeScalingKind::Yarn => types::RopeScalingKind::Yarn,
            },
            factor: r.factor,
            original_context: r.original_context.map(|n| n.try_into().unwrap_or(u32::MAX)),
        }),
    }
}

impl ComponentBackend {
    fn generation_resource(&self, h: SeqHandle) -> EngineResult<ResourceAny> {
        self.generations.get(&h).copied().ok_or_else(|| no_generation(h).into())
    }
}

/// The WIT `error` is the engine's [`EngineError`], case for case.
impl From<types::Error> for EngineError {
    fn from(e: types::Error) -> EngineError {
        match e {
            types::Error::InvalidModel(m) => EngineError::InvalidModel(m),
            types::Error::Unsupported(m) => EngineError::Unsupported(m),
            types::Error::InvalidArgument(m) => EngineError::InvalidArgument(m),
            types::Error::ContextOverflow(m) => EngineError::ContextOverflow(m),
            types::Error::OutOfMemory(m) => EngineError::OutOfMemory(m),
            types::Error::DeviceLost(m) => EngineError::DeviceLost(m),
        }
    }
}

fn wit_prompt(prompt: PromptInput) -> types::Prompt {
    match prompt {
        PromptInput::Text(t) => types::Prompt::Text(t.to_string()),
        PromptInput::Chat(messages) => types::Prompt::Chat(
            messages
                .iter()
                .map(|m| types::Message {
                    role: m.role.clone(),
                    content: m.content.clone(),
                })
                .collect(),
        ),
        PromptInput::Tokens(t) => types::Prompt::Tokens(t.to_vec()),
    }
}

fn finish_reason(reason: types::FinishReason) -> FinishReason {
    match reason {
        types::FinishReason::Stop => FinishReason::Stop,
        types::FinishReason::Length => FinishReason::Length,
        types::FinishReason::Cancelled => FinishReason::Cancelled,
    }
}

/// A trap (or other wasmtime failure) is a bug in the engine: say so; the instance is then dropped.
fn trapped(e: wasmtime::Error) -> EngineFailure {
    EngineFailure::Trapped(format!("{e:#}"))
}

/// A fresh engine instance whose memory may grow to `memory_limit` bytes, given `gpu` (or told
/// why it has none) through `rill:gpu`.
fn instantiate(
    memory_limit: usize,
    gpu: Result<Arc<WgpuDevice>, GpuError>,
) -> anyhow::Result<(Store<State>, bindings::Engine)> {
    let mut config = wasmtime::Config::new();
    // `RILL_PROFILE=perfmap` writes /tmp/perf-PID.map, so `perf report` names the engine's functions.
    if std::env::var_os("RILL_PROFILE").is_some_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    // Test builds can make the instance trap on demand (see `Backend::inject_trap`).
    #[cfg(feature = "fault-injection")]
    config.epoch_interruption(true);
    let wt = wasmtime::Engine::new(&config).map_err(|e| anyhow!("configuring wasmtime: {e:#}"))?;
    let component = crate::compiled::component(&wt, "rill-engine", ENGINE_WASM)?;
    let mut linker = Linker::new(&wt);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow!("linking WASI: {e:#}"))?;
    bindings::rill::gpu::webgpu::add_to_linker::<State, HasGpu>(&mut linker, |s| GpuHost {
        device: &s.gpu,
        table: &mut s.table,
    })
    .map_err(|e| anyhow!("linking rill:gpu: {e:#}"))?;
    let state = State {
        gpu,
        wasi: WasiCtxBuilder::new().inherit_stderr().build(),
        table: ResourceTable::new(),
        limits: MemoryLimiter {
            limits: StoreLimitsBuilder::new().memory_size(memory_limit).build(),
            memory_bytes: 0,
        },
    };
    let mut store = Store::new(&wt, state);
    store.limiter(|s| &mut s.limits);
    #[cfg(feature = "fault-injection")]
    store.set_epoch_deadline(u64::MAX / 2);
    let engine = bindings::Engine::instantiate(&mut store, &component, &linker).map_err(trapped)?;
    Ok((store, engine))
}

/// What the engine component reports about itself: (kernel path, simd128, relaxed-simd).
pub fn capabilities() -> anyhow::Result<(String, bool, bool)> {
    let (mut store, engine) = instantiate(64 << 20, Err(GpuError::Unavailable("not asked for".into())))?;
    let c = engine
        .rill_llm_inference()
        .call_get_capabilities(&mut store)
        .map_err(trapped)?;
    Ok((c.kernel_path, c.simd128, c.relaxed_simd))
}

/// The component's memory limit when none is configured: room for the weights, the load
/// buffer and a KV cache.
pub fn default_memory_limit(file_len: u64) -> usize {
    (2 * file_len + (1 << 30)).min(4 << 30) as usize
}

impl ComponentBackend {
    /// Loads `model` into a fresh engine instance whose memory may grow to `memory_limit` bytes
    /// (default: [`default_memory_limit`]), on `gpu` when given one, else on the CPU.
    pub fn load(
        model: &Path,
        options: &LoadOptions,
        memory_limit: Option<usize>,
        gpu: Option<Arc<WgpuDevice>>,
    ) -> anyhow::Result<ComponentBackend> {
        let mut file = std::fs::File::open(model).with_context(|| format!("opening {}", model.display()))?;
        let file_len = file.metadata()?.len();
        let limit = memory_limit.unwrap_or(default_memory_limit(file_len));

        let on_gpu = gpu.as_ref().map(|g| g.adapter_info().to_string());
        let gpu = gpu.ok_or_else(|| GpuError::Unavailable("the CPU backend was chosen".into()));
        let (mut store, engine) = instantiate(limit, gpu)?;

        let api = engine.rill_llm_inference();
        let loader = api
            .loader()
            .call_constructor(&mut store, Some(file_len))
            .map_err(trapped)?;
        let bar = ProgressBar::new(file_len).with_style(
            ProgressStyle::with_template("loading {msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}").unwrap(),
        );
        bar.set_message(model.file_name().unwrap_or_default().to_string_lossy().into_owned());
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = file
                .read(&mut chunk)
                .with_context(|| format!("reading {}", model.display()))?;
            if n == 0 {
                break;
            }
            api.loader()
                .call_push(&mut store, loader, &chunk[..n])
                .map_err(trapped)?
                .map_err(EngineError::from)?;
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
        let model_res = api
            .loader()
            .call_finish(&mut store, loader, load_options(options))
            .map_err(trapped)?;
        loader.resource_drop(&mut store).map_err(trapped)?;
        let model_res = model_res
            .map_err(EngineError::from)
            .with_context(|| format!("loading {}", model.display()))?;
        Ok(ComponentBackend {
            store,
            engine,
            model: model_res,
            generations: HashMap::new(),
            on_gpu,
        })
    }
}

impl Backend for ComponentBackend {
    fn name(&self) -> &'static str {
        if self.on_gpu.is_some() {
            "gpu"
        } else {
            "component"
        }
    }

    fn memory_bytes(&self) -> Option<u64> {
        Some(self.store.data().limits.memory_bytes as u64)
    }

    #[cfg(feature = "fault-injection")]
    fn arm_trap(&mut self) -> Box<dyn Fn() + Send> {
        // The guest checks the epoch at function entries and loop heads: once the engine's
        // epoch passes the deadline, it traps at the next check.
        self.store.epoch_deadline_trap();
        self.store.set_epoch_deadline(1);
        let engine = self.store.engine().clone();
        Box::new(move || engine.increment_epoch())
    }

    #[cfg(feature = "fault-injection")]
    fn arm_gpu_loss(&mut self) -> Option<Box<dyn Fn() + Send>> {
        let gpu = self.store.data().gpu.as_ref().ok()?.clone();
        Some(Box::new(move || gpu.lose()))
    }

    fn kernel_path(&mut self) -> EngineResult<String> {
        if let Some(adapter) = &self.on_gpu {
            return Ok(format!("webgpu on {adapter}"));
        }
        let api = self.engine.rill_llm_inference();
        Ok(api.call_get_capabilities(&mut self.store).map_err(trapped)?.kernel_path)
    }

    fn vocab_size(&mut self) -> EngineResult<usize> {
        let model = self.engine.rill_llm_inference().model();
        Ok(model
            .call_info(&mut self.store, self.model)
            .map_err(trapped)?
            .vocab_size as usize)
    }

    fn kv_memory(&mut self) -> EngineResult<KvMemory> {
        let m = self
            .engine
            .rill_llm_inference()
            .model()
            .call_kv_memory(&mut self.store, self.model)
            .map_err(trapped)?;
        Ok(KvMemory {
            used: m.used,
            budget: m.budget,
            prefix_cache: m.prefix_cache,
        })
    }

    fn set_kv_budget(&mut self, bytes: u64) -> EngineResult<()> {
        self.engine
            .rill_llm_inference()
            .model()
            .call_set_kv_budget(&mut self.store, self.model, bytes)
            .map_err(trapped)
    }

    fn tokenize(&mut self, text: &str, add_bos: bool, parse_special: bool) -> EngineResult<Vec<u32>> {
        let api = self.engine.rill_llm_inference();
        api.model()
            .call_tokenize(&mut self.store, self.model, text, add_bos, parse_special)
            .map_err(trapped)
    }

    fn top_logits(&mut self, tokens: &[u32], top: usize) -> EngineResult<Vec<Vec<(u32, f32)>>> {
        let api = self.engine.rill_llm_inference();
        api.model()
            .call_logits(&mut self.store, self.model, tokens, top as u32)
            .map_err(trapped)?
            .map_err(|e| EngineError::from(e).into())
    }

    fn prompt_tokens(&mut self, prompt: PromptInput) -> EngineResult<Vec<u32>> {
        let api = self.engine.rill_llm_inference();
        api.model()
            .call_prompt_tokens(&mut self.store, self.model, &wit_prompt(prompt))
            .map_err(trapped)?
            .map_err(|e| EngineError::from(e).into())
    }

    fn start(&mut self, prompt: PromptInput, params: GenerateParams) -> EngineResult<SeqHandle> {
        let api = self.engine.rill_llm_inference();
        let prompt = wit_prompt(prompt);
        let s = &params.sampling;
        let wit_params = types::GenerateParams {
            sampling: types::SamplingParams {
                temperature: s.temperature,
                top_k: s.top_k as u32,
                top_p: s.top_p,
                min_p: s.min_p,
                repeat_penalty: s.repeat_penalty,
                frequency_penalty: s.frequency_penalty,
                presence_penalty: s.presence_penalty,
                penalty_last_n: s.penalty_last_n as u32,
                seed: s.seed,
                logit_bias: s.logit_bias.0.clone(),
            },
            max_tokens: params.max_tokens.try_into().unwrap_or(u32::MAX),
            ignore_eos: params.ignore_eos,
            stop: params.stop.clone(),
            context: params.context.try_into().unwrap_or(u32::MAX),
            on_full_context: match params.on_full_context {
                ContextPolicy::Finish => types::ContextPolicy::Finish,
                ContextPolicy::Error => types::ContextPolicy::Error,
                ContextPolicy::Shift { keep } => types::ContextPolicy::Shift(keep.try_into().unwrap_or(u32::MAX)),
            },
            kv_type: match params.kv_type {
                KvType::F16 => types::KvType::F16,
                KvType::Q8_0 => types::KvType::Q80,
            },
            logprobs: params.logprobs,
            top_logprobs: params.top_logprobs as u32,
        };
        let generation = api
            .model()
            .call_generate(&mut self.store, self.model, &prompt, &wit_params)
            .map_err(trapped)?
            .map_err(EngineError::from)?;
        let id = api.generation().call_id(&mut self.store, generation).map_err(trapped)?;
        self.generations.insert(id, generation);
        Ok(id)
    }

    fn step(&mut self, limits: StepLimits) -> EngineResult<Vec<Progress>> {
        let limits = types::StepLimits {
            generations: limits.generations.try_into().unwrap_or(u32::MAX),
            prompt_tokens: limits.prompt_tokens.try_into().unwrap_or(u32::MAX),
        };
        let stepped = self
            .engine
            .rill_llm_inference()
            .model()
            .call_step(&mut self.store, self.model, limits)
            .map_err(trapped)?;
        let logprob = |t: types::TokenLogprob| TokenLogprob {
            id: t.id,
            bytes: t.bytes,
            logprob: t.logprob,
        };
        Ok(stepped
            .into_iter()
            .map(|s| Progress {
                handle: s.generation,
                event: s.event.map(|e| TokenEvent {
                    id: e.id,
                    text: e.text,
                    logprob: e.logprob.map(logprob),
                    top_logprobs: e.top_logprobs.into_iter().map(logprob).collect(),
                }),
                end: s.end.map(|end| match end {
                    types::End::Finished(reason) => Ok(finish_reason(reason)),
                    types::End::Failed(e) => Err(e.into()),
                }),
            })
            .collect())
    }

    fn cancel(&mut self, h: SeqHandle) -> EngineResult<()> {
        let generation = self.generation_resource(h)?;
        self.engine
            .rill_llm_inference()
            .generation()
            .call_cancel(&mut self.store, generation)
            .map_err(trapped)
    }

    fn finish(&mut self, h: SeqHandle) -> EngineResult<Outcome> {
        let generation = self.generations.remove(&h).ok_or_else(|| no_generation(h))?;
        let g = self.engine.rill_llm_inference().generation();
        let usage = g.call_usage(&mut self.store, generation).map_err(trapped)?;
        let timings = g.call_timings(&mut self.store, generation).map_err(trapped)?;
        let finish = g.call_finish_reason(&mut self.store, generation).map_err(trapped)?;
        generation.resource_drop(&mut self.store).map_err(trapped)?;
        let ms = |v: f64| Duration::from_secs_f64(v / 1e3);
        Ok(Outcome {
            usage: Usage {
                prompt_tokens: usage.prompt_tokens as usize,
                completion_tokens: usage.completion_tokens as usize,
                cached_tokens: usage.cached_tokens as usize,
                preemptions: usage.preemptions as usize,
                context_shifts: usage.context_shifts as usize,
            },
            timings: Timings {
                prompt: ms(timings.prompt_ms),
                decode: ms(timings.decode_ms),
                time_to_first_token: ms(timings.time_to_first_token_ms),
            },
            finish: finish.map(finish_reason),
        })
    }
}
