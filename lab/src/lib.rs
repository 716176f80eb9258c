//! Rill's lab: what measures and checks the product rather than being it. Built on the host
//! library (`rill-host`), which never depends on it.
//!
//! - `rill bench`: [`bench`] (prompt, decode, prefix cache, optionally against llama-bench),
//!   [`bench_batch`] (concurrency levels through `model.step`), [`peer_server`] (llama-server
//!   as the concurrency peer), [`bench_history`] (recording runs, baselines, `--check`);
//! - [`store`]: the metrics store (SQLite) for runs, serve minutes and compatibility results,
//!   with [`regression`] detection and [`calibration`] of the machine's speed;
//! - [`dashboard`]: the page over the store, served alone or by `rill serve`;
//! - [`compat`]: the compatibility checks on every host found here, with [`child_server`] to
//!   run other programs' servers.

pub mod bench;
pub mod bench_batch;
pub mod bench_history;
pub mod calibration;
pub mod child_server;
pub mod compat;
pub mod dashboard;
pub mod peer_server;
pub mod regression;
pub mod store;
