//! The OpenAI-compatible API, without any HTTP stack: what `rill serve` and the edge worker
//! share. [`request`] turns a JSON body into an engine request or an [`ApiError`];
//! [`response`] writes the JSON bodies and SSE chunks for what the engine produced.

pub mod clock;
pub mod error;
pub mod request;
pub mod response;
pub mod served_model;

pub use clock::TokenClock;
pub use error::ApiError;
pub use request::{parse_chat, parse_completion, Endpoint, GenerationRequest, PromptSpec};
pub use response::{logprob_json, sse_event, usage_json, Finish, Latency, ResponseWriter, Timings, TokenOut, SSE_DONE};
pub use rill_engine::engine::Usage;
pub use served_model::{health, ServedModel};
