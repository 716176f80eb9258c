//! The engine crate running natively in this process.

use super::{Backend, EngineFailure, Outcome, PromptInput};
use anyhow::Context;
use rill_engine::{Engine, GenerateParams, Prompt, TokenEvent};
use rill_kernels::KernelPath;
use std::path::Path;
use std::sync::Arc;

pub struct NativeBackend {
    engine: Arc<Engine>,
}

impl NativeBackend {
    pub fn load(model: &Path) -> anyhow::Result<NativeBackend> {
        let file = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
        let engine = Engine::load(file, KernelPath::best()).with_context(|| format!("loading {}", model.display()))?;
        Ok(NativeBackend { engine: Arc::new(engine) })
    }
}

impl Backend for NativeBackend {
    fn name(&self) -> &'static str {
        "native"
    }

    fn kernel_path(&mut self) -> anyhow::Result<String> {
        Ok(KernelPath::best().name().to_string())
    }

    fn tokenize(&mut self, text: &str, add_bos: bool, parse_special: bool) -> anyhow::Result<Vec<u32>> {
        Ok(self.engine.tokenizer.encode(text, add_bos, parse_special))
    }

    fn top_logits(&mut self, tokens: &[u32], top: usize) -> anyhow::Result<Vec<Vec<(u32, f32)>>> {
        Ok(self.engine.top_logits(tokens, top)?)
    }

    fn generate(&mut self, prompt: PromptInput, params: GenerateParams, on_event: &mut dyn FnMut(TokenEvent) -> anyhow::Result<()>) -> anyhow::Result<Outcome> {
        let tokens = match prompt {
            PromptInput::Text(t) => self.engine.prompt_tokens(&Prompt::Text(t)).map_err(EngineFailure::from)?,
            PromptInput::Chat(messages) => self.engine.prompt_tokens(&Prompt::Chat(messages)).map_err(EngineFailure::from)?,
            PromptInput::Tokens(t) => t.to_vec(),
        };
        let mut generation = self.engine.generate(tokens, params).map_err(EngineFailure::from)?;
        while let Some(event) = generation.next().map_err(EngineFailure::from)? {
            on_event(event)?;
        }
        Ok(Outcome { usage: generation.usage(), timings: generation.timings(), finish: generation.finish_reason() })
    }
}
