//! Where the engine runs: as the WIT component inside wasmtime (the product), or as the engine
//! crate natively in this process (for comparison). Commands talk to one trait.

pub mod component;
pub mod native;

use clap::ValueEnum;
use rill_engine::engine::{FinishReason, Timings, Usage};
use rill_engine::{GenerateParams, TokenEvent};
use std::path::Path;

/// What a generation is started from.
pub enum PromptInput<'a> {
    Text(&'a str),
    /// A user message, wrapped with the model's chat template.
    Chat(&'a str),
    /// Token ids, used as given.
    Tokens(&'a [u32]),
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
    /// The kernels the engine uses: "simd128", "avx2" or "scalar".
    fn kernel_path(&mut self) -> anyhow::Result<String>;
    fn tokenize(&mut self, text: &str, add_bos: bool, parse_special: bool) -> anyhow::Result<Vec<u32>>;
    fn top_logits(&mut self, tokens: &[u32], top: usize) -> anyhow::Result<Vec<Vec<(u32, f32)>>>;
    /// Runs a generation, handing each token event to `on_event` as it arrives.
    fn generate(&mut self, prompt: PromptInput, params: GenerateParams, on_event: &mut dyn FnMut(TokenEvent) -> anyhow::Result<()>) -> anyhow::Result<Outcome>;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The engine component in wasmtime.
    #[default]
    Component,
    /// The engine crate, natively.
    Native,
}

/// Loads `model` on a backend; `memory_limit` (bytes) caps the component's memory.
pub fn open(kind: BackendKind, model: &Path, memory_limit: Option<usize>) -> anyhow::Result<Box<dyn Backend>> {
    Ok(match kind {
        BackendKind::Component => Box::new(component::ComponentBackend::load(model, memory_limit)?),
        BackendKind::Native => Box::new(native::NativeBackend::load(model)?),
    })
}
