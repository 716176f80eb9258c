//! rill-edge: the Rill engine as a `wasi:http/proxy` component, serving the same
//! OpenAI-compatible API as `rill serve` (chat completions, completions, models, health; JSON
//! or SSE) on hosts that run wasi:http components: `wasmtime serve`, Spin, wasmCloud,
//! `jco serve`. Such hosts may give every request a fresh instance; the model is read on an
//! instance's first request from `RILL_MODEL` (a path in a preopened directory), else from the
//! first `.gguf` file in `/models`. `rill bake` makes a worker whose memory image already holds
//! the loaded model (it calls the `preload` export and snapshots the instance), so a fresh
//! instance starts with it.
//!
//! Request parsing, validation, error bodies and SSE framing are `rill-api`'s, shared with
//! `rill serve`. WebSocket is not possible here: WASI 0.2 http has no connection upgrade.

#[cfg(target_arch = "wasm32")]
mod body;
#[cfg(target_arch = "wasm32")]
mod handler;
#[cfg(target_arch = "wasm32")]
mod model;
#[cfg(target_arch = "wasm32")]
mod preload;
