//! The edge worker (`edge/`, a `wasi:http/proxy` component) in this host's own wasmtime:
//! what its instances may reach, for `rill bake` (which snapshots one) and `rill serve
//! --worker` (which gives every request a fresh one, as edge platforms do).

pub mod serve;

use anyhow::anyhow;
use std::path::Path;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The edge worker, built for this `rill` by build.rs.
pub const EDGE_WASM: &[u8] = include_bytes!(env!("RILL_EDGE_WASM"));

/// Where a worker instance finds its model file, when it reads one (an unbaked worker).
const MODELS_DIR: &str = "/models";

/// One worker instance's host state: WASI (stderr, and the model's folder read-only when
/// there is a model to read) and wasi:http.
pub struct WorkerState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WorkerState {
    /// An instance that sees `model`'s folder as /models and `RILL_MODEL` naming the file; with
    /// no model, one that can only serve what its memory image holds (a baked worker).
    pub fn new(model: Option<&Path>) -> anyhow::Result<WorkerState> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.inherit_stderr();
        if let Some(model) = model {
            let (dir, name) = (
                model.parent().unwrap_or(Path::new(".")),
                model.file_name().unwrap_or_default(),
            );
            wasi.preopened_dir(dir, MODELS_DIR, FsPerms::ReadOnly)
                .map_err(|e| anyhow!("preopening {}: {e:#}", dir.display()))?;
            wasi.env("RILL_MODEL", format!("{MODELS_DIR}/{}", name.to_string_lossy()));
        }
        Ok(WorkerState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
        })
    }
}

impl WasiView for WorkerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for WorkerState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: wasmtime_wasi_http::default_hooks(),
        }
    }
}

/// WASI and wasi:http, the imports of the `wasi:http/proxy` world (async: the host is tokio).
pub fn linker(engine: &wasmtime::Engine) -> anyhow::Result<Linker<WorkerState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("linking WASI: {e:#}"))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(|e| anyhow!("linking wasi:http: {e:#}"))?;
    Ok(linker)
}
