//! The Rill host: everything a user runs the engine with, as a library under the `rill`
//! binary (`cli/`). It loads the engine component in wasmtime or the engine crate natively
//! ([`backend`]), reads rill.toml ([`config`]), knows and fetches models ([`models`]), serves
//! the OpenAI-compatible API ([`serve`]) and runs and bakes edge workers ([`edge`]).
//!
//! The lab (benchmarks, the metrics store, the dashboard, compatibility checks) is the
//! `rill-lab` crate, built on this one; nothing here depends on it. `rill serve` takes the
//! dashboard's routes and a telemetry sink from its caller ([`serve::Extras`]).

pub mod backend;
pub mod commands;
mod compiled;
pub mod config;
pub mod dirs;
pub mod edge;
pub mod gpu;
pub mod models;
pub mod serve;
