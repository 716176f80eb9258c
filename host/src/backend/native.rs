//! The engine crate running natively in this process.

use super::{no_generation, Backend, EngineResult, KvMemory, Outcome, Progress, PromptInput, SeqHandle};
use anyhow::Context;
use rill_engine::model::LoadOptions;
use rill_engine::scheduler::{End, Scheduler, StepLimits};
use rill_engine::{Engine, GenerateParams, Prompt};
use rill_kernels::KernelPath;
use std::path::Path;
use std::sync::Arc;

pub struct NativeBackend {
    engine: Arc<Engine>,
    scheduler: Scheduler,
}

impl NativeBackend {
    pub fn load(model: &Path, options: &LoadOptions) -> anyhow::Result<NativeBackend> {
        let file = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
        let engine =
            Engine::load(file, KernelPath::best(), options).with_context(|| format!("loading {}", model.display()))?;
        Ok(NativeBackend {
            engine: Arc::new(engine),
            scheduler: Scheduler::default(),
        })
    }
}

impl Backend for NativeBackend {
    fn name(&self) -> &'static str {
        "native"
    }

    fn kernel_path(&mut self) -> EngineResult<String> {
        Ok(KernelPath::best().name().to_string())
    }

    fn vocab_size(&mut self) -> EngineResult<usize> {
        Ok(self.engine.model.config.vocab_size)
    }

    fn kv_memory(&mut self) -> EngineResult<KvMemory> {
        let (used, budget, prefix_cache) = self.engine.kv_memory();
        Ok(KvMemory {
            used: used as u64,
            budget: budget.try_into().unwrap_or(u64::MAX),
            prefix_cache: prefix_cache as u64,
        })
    }

    fn set_kv_budget(&mut self, bytes: u64) -> EngineResult<()> {
        self.engine
            .model
            .kv_memory
            .set_budget(bytes.try_into().unwrap_or(usize::MAX));
        Ok(())
    }

    fn tokenize(&mut self, text: &str, add_bos: bool, parse_special: bool) -> EngineResult<Vec<u32>> {
        Ok(self.engine.tokenizer.encode(text, add_bos, parse_special))
    }

    fn top_logits(&mut self, tokens: &[u32], top: usize) -> EngineResult<Vec<Vec<(u32, f32)>>> {
        Ok(self.engine.top_logits(tokens, top)?)
    }

    fn prompt_tokens(&mut self, prompt: PromptInput) -> EngineResult<Vec<u32>> {
        Ok(match prompt {
            PromptInput::Text(t) => self.engine.prompt_tokens(&Prompt::Text(t))?,
            PromptInput::Chat(messages) => self.engine.prompt_tokens(&Prompt::Chat(messages))?,
            PromptInput::Tokens(t) => t.to_vec(),
        })
    }

    fn start(&mut self, prompt: PromptInput, params: GenerateParams) -> EngineResult<SeqHandle> {
        let tokens = self.prompt_tokens(prompt)?;
        let generation = self.engine.generate(tokens, params)?;
        Ok(self.scheduler.add(generation))
    }

    fn step(&mut self, limits: StepLimits) -> EngineResult<Vec<Progress>> {
        Ok(self
            .scheduler
            .step(limits)
            .into_iter()
            .map(|s| Progress {
                handle: s.id,
                event: s.event,
                end: s.end.map(|end| match end {
                    End::Finished(reason) => Ok(reason),
                    End::Failed(e) => Err(e),
                }),
            })
            .collect())
    }

    fn cancel(&mut self, h: SeqHandle) -> EngineResult<()> {
        self.scheduler.get_mut(h).ok_or_else(|| no_generation(h))?.cancel();
        Ok(())
    }

    fn finish(&mut self, h: SeqHandle) -> EngineResult<Outcome> {
        let g = self.scheduler.remove(h).ok_or_else(|| no_generation(h))?;
        Ok(Outcome {
            usage: g.usage(),
            timings: g.timings(),
            finish: g.finish_reason(),
        })
    }
}
