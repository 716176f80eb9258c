//! rill-engine: the Rill inference engine. Target-agnostic Rust: it builds natively and for
//! `wasm32-wasip2`, where a thin export layer makes it the WIT component.

pub mod chat;
pub mod engine;
pub mod gguf;
pub mod gpu;
pub mod model;
pub mod prefix_cache;
pub mod sampler;
pub mod scheduler;
pub mod settings;
pub mod stop;
pub mod tokenizer;

pub use engine::{
    ContextPolicy, Engine, EngineError, GenerateParams, Generation, Prompt, TokenEvent, TokenLogprob, MAX_TOP_LOGPROBS,
};

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod export;
