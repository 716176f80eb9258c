//! The WIT export layer (`wit/rill.wit`, world `engine`): thin glue from the generated
//! bindings to [`crate::Engine`]. Built only for wasm32, where the crate is the component.

use crate::chat::Message as ChatMessage;
use crate::engine::{ContextPolicy, Engine, EngineError, FinishReason, GenerateParams, Generation, Prompt};
use crate::gguf::ChunkedReader;
use crate::gpu::import::ImportedGpu;
use crate::gpu::GpuError;
use crate::model::{KvType, LoadOptions, RopeScalingKind, RopeScalingOptions};
use crate::sampler::{LogitBias, SamplingParams};
use crate::scheduler::{End, Scheduler, SeqId, StepLimits};
use exports::rill::llm::inference::{self, Guest, GuestGeneration, GuestLoader, GuestModel};
use rill::llm::types;
use rill_kernels::KernelPath;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

wit_bindgen::generate!({ world: "engine", path: "../wit", generate_all });

struct Component;
export!(Component);

impl From<EngineError> for types::Error {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InvalidModel(m) => types::Error::InvalidModel(m),
            EngineError::Unsupported(m) => types::Error::Unsupported(m),
            EngineError::InvalidArgument(m) => types::Error::InvalidArgument(m),
            EngineError::ContextOverflow(m) => types::Error::ContextOverflow(m),
            EngineError::OutOfMemory(m) => types::Error::OutOfMemory(m),
            EngineError::DeviceLost(m) => types::Error::DeviceLost(m),
        }
    }
}

impl Guest for Component {
    type Loader = Loader;
    type Model = Model;
    type Generation = GenerationResource;

    fn get_capabilities() -> types::Capabilities {
        types::Capabilities {
            kernel_path: KernelPath::best().name().to_string(),
            simd128: cfg!(target_feature = "simd128"),
            relaxed_simd: cfg!(target_feature = "relaxed-simd"),
        }
    }
}

pub struct Loader {
    /// `None` once `finish` has taken it.
    reader: RefCell<Option<ChunkedReader>>,
}

fn finished() -> types::Error {
    types::Error::InvalidArgument("the loader has already finished".into())
}

impl GuestLoader for Loader {
    fn new(total_bytes: Option<u64>) -> Self {
        Loader {
            reader: RefCell::new(Some(ChunkedReader::new(total_bytes))),
        }
    }

    fn push(&self, chunk: Vec<u8>) -> Result<types::LoadProgress, types::Error> {
        let mut reader = self.reader.borrow_mut();
        let reader = reader.as_mut().ok_or_else(finished)?;
        let p = reader.push(&chunk).map_err(EngineError::from)?;
        Ok(types::LoadProgress {
            bytes_seen: p.bytes_seen,
            tensors_ready: p.tensors_ready as u32,
            tensors_total: p.tensors_total.map(|n| n as u32),
        })
    }

    fn finish(&self, options: types::LoadOptions) -> Result<inference::Model, types::Error> {
        let reader = self.reader.borrow_mut().take().ok_or_else(finished)?;
        let (gguf, file) = reader.finish().map_err(EngineError::from)?;
        let options = LoadOptions {
            rope_scaling: options.rope_scaling.map(|r| RopeScalingOptions {
                kind: match r.kind {
                    types::RopeScalingKind::None => RopeScalingKind::None,
                    types::RopeScalingKind::Linear => RopeScalingKind::Linear,
                    types::RopeScalingKind::Yarn => RopeScalingKind::Yarn,
                },
                factor: r.factor,
                original_context: r.original_context.map(|n| n as usize),
            }),
        };
        let mut engine = Engine::from_parts(gguf, Arc::new(file), KernelPath::best(), &options)?;
        // The GPU when the host gives the engine one; the CPU when it says it has none.
        match ImportedGpu::get() {
            Ok(gpu) => engine.use_gpu(Arc::new(gpu), &mut |_| {})?,
            Err(GpuError::Unavailable(_)) => {}
            Err(e) => return Err(EngineError::from(e).into()),
        }
        Ok(inference::Model::new(Model {
            engine: Arc::new(engine),
            scheduler: Rc::default(),
        }))
    }
}

impl Model {
    /// The token ids of `prompt`, as a generation reads them.
    fn tokens(&self, prompt: types::Prompt) -> Result<Vec<u32>, types::Error> {
        Ok(match prompt {
            types::Prompt::Text(t) => self.engine.prompt_tokens(&Prompt::Text(&t))?,
            types::Prompt::Tokens(t) => t,
            types::Prompt::Chat(m) => self.engine.prompt_tokens(&Prompt::Chat(&chat_messages(m)))?,
        })
    }
}

pub struct Model {
    engine: Arc<Engine>,
    /// The model's live generations, stepped together (see the WIT's `model.step`).
    scheduler: Rc<RefCell<Scheduler>>,
}

fn chat_messages(messages: Vec<types::Message>) -> Vec<ChatMessage> {
    messages
        .into_iter()
        .map(|m| ChatMessage {
            role: m.role,
            content: m.content,
        })
        .collect()
}

impl GuestModel for Model {
    fn info(&self) -> types::ModelInfo {
        let i = self.engine.info();
        types::ModelInfo {
            architecture: i.architecture,
            name: i.name,
            parameters: i.parameters,
            context_length: i.context_length as u32,
            vocab_size: i.vocab_size as u32,
            quant_types: i.quant_types,
            memory_bytes: i.memory_bytes,
            kv_bytes_per_token: i.kv_bytes_per_token,
        }
    }

    fn kv_memory(&self) -> types::KvMemory {
        let (used, budget, prefix_cache) = self.engine.kv_memory();
        types::KvMemory {
            used: used as u64,
            budget: budget.try_into().unwrap_or(u64::MAX),
            prefix_cache: prefix_cache as u64,
        }
    }

    fn set_kv_budget(&self, bytes: u64) {
        self.engine
            .model
            .kv_memory
            .set_budget(bytes.try_into().unwrap_or(usize::MAX));
    }

    fn step(&self, limits: types::StepLimits) -> Vec<types::Stepped> {
        let limits = StepLimits {
            generations: limits.generations as usize,
            prompt_tokens: limits.prompt_tokens as usize,
        };
        let stepped = self.scheduler.borrow_mut().step(limits);
        stepped
            .into_iter()
            .map(|s| types::Stepped {
                generation: s.id,
                event: s.event.map(|e| types::TokenEvent {
                    id: e.id,
                    text: e.text,
                    logprob: e.logprob.map(wit_logprob),
                    top_logprobs: e.top_logprobs.into_iter().map(wit_logprob).collect(),
                }),
                end: s.end.map(|end| match end {
                    End::Finished(reason) => types::End::Finished(wit_finish_reason(reason)),
                    End::Failed(e) => types::End::Failed(e.into()),
                }),
            })
            .collect()
    }

    fn tokenize(&self, text: String, add_bos: bool, parse_special: bool) -> Vec<u32> {
        self.engine.tokenizer.encode(&text, add_bos, parse_special)
    }

    fn prompt_tokens(&self, prompt: types::Prompt) -> Result<Vec<u32>, types::Error> {
        self.tokens(prompt)
    }

    fn detokenize(&self, tokens: Vec<u32>) -> Result<String, types::Error> {
        self.engine
            .tokenizer
            .decode(&tokens, false)
            .map_err(|e| EngineError::from(e).into())
    }

    fn apply_chat_template(
        &self,
        messages: Vec<types::Message>,
        add_generation_prompt: bool,
    ) -> Result<String, types::Error> {
        let template = self.engine.chat_template()?;
        template
            .render(&chat_messages(messages), add_generation_prompt)
            .map_err(|e| EngineError::from(e).into())
    }

    fn generate(
        &self,
        prompt: types::Prompt,
        params: types::GenerateParams,
    ) -> Result<inference::Generation, types::Error> {
        let tokens = self.tokens(prompt)?;
        let s = params.sampling;
        let params = GenerateParams {
            sampling: SamplingParams {
                temperature: s.temperature,
                top_k: s.top_k as usize,
                top_p: s.top_p,
                min_p: s.min_p,
                repeat_penalty: s.repeat_penalty,
                frequency_penalty: s.frequency_penalty,
                presence_penalty: s.presence_penalty,
                penalty_last_n: s.penalty_last_n as usize,
                seed: s.seed,
                logit_bias: LogitBias(s.logit_bias),
            },
            max_tokens: params.max_tokens as usize,
            ignore_eos: params.ignore_eos,
            stop: params.stop,
            context: params.context as usize,
            on_full_context: match params.on_full_context {
                types::ContextPolicy::Finish => ContextPolicy::Finish,
                types::ContextPolicy::Error => ContextPolicy::Error,
                types::ContextPolicy::Shift(keep) => ContextPolicy::Shift { keep: keep as usize },
            },
            kv_type: match params.kv_type {
                types::KvType::F16 => KvType::F16,
                types::KvType::Q80 => KvType::Q8_0,
            },
            logprobs: params.logprobs,
            top_logprobs: params.top_logprobs as usize,
        };
        let generation = self.engine.generate(tokens, params)?;
        let id = self.scheduler.borrow_mut().add(generation);
        Ok(inference::Generation::new(GenerationResource {
            scheduler: self.scheduler.clone(),
            id,
        }))
    }

    fn logits(&self, tokens: Vec<u32>, top: u32) -> Result<Vec<Vec<(u32, f32)>>, types::Error> {
        Ok(self.engine.top_logits(&tokens, top as usize)?)
    }
}

fn wit_finish_reason(r: FinishReason) -> types::FinishReason {
    match r {
        FinishReason::Stop => types::FinishReason::Stop,
        FinishReason::Length => types::FinishReason::Length,
        FinishReason::Cancelled => types::FinishReason::Cancelled,
    }
}

fn wit_logprob(t: crate::TokenLogprob) -> types::TokenLogprob {
    types::TokenLogprob {
        id: t.id,
        bytes: t.bytes,
        logprob: t.logprob,
    }
}

/// A generation: its place in the model's scheduler, left when the resource is dropped.
pub struct GenerationResource {
    scheduler: Rc<RefCell<Scheduler>>,
    id: SeqId,
}

impl GenerationResource {
    fn with<T>(&self, f: impl FnOnce(&Generation) -> T) -> T {
        f(self
            .scheduler
            .borrow()
            .get(self.id)
            .expect("a live resource keeps its generation"))
    }
}

impl Drop for GenerationResource {
    fn drop(&mut self) {
        self.scheduler.borrow_mut().remove(self.id);
    }
}

impl GuestGeneration for GenerationResource {
    fn id(&self) -> u64 {
        self.id
    }

    fn cancel(&self) {
        if let Some(g) = self.scheduler.borrow_mut().get_mut(self.id) {
            g.cancel();
        }
    }

    fn usage(&self) -> types::Usage {
        let u = self.with(Generation::usage);
        types::Usage {
            prompt_tokens: u.prompt_tokens as u32,
            completion_tokens: u.completion_tokens as u32,
            cached_tokens: u.cached_tokens as u32,
            preemptions: u.preemptions as u32,
            context_shifts: u.context_shifts as u32,
        }
    }

    fn timings(&self) -> types::Timings {
        let t = self.with(Generation::timings);
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        types::Timings {
            prompt_ms: ms(t.prompt),
            decode_ms: ms(t.decode),
            time_to_first_token_ms: ms(t.time_to_first_token),
        }
    }

    fn finish_reason(&self) -> Option<types::FinishReason> {
        self.with(Generation::finish_reason).map(wit_finish_reason)
    }
}
