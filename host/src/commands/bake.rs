//! `rill bake --model M -o worker.wasm`: the edge worker with the model already loaded in its
//! memory image. It instantiates the worker (built by build.rs) in wasmtime with the model's
//! folder preopened, calls its `preload` export, and has wasmtime's Wizer write the instance's
//! memory and globals out as the data of a new component. A host that gives every request a
//! fresh instance then maps that image copy-on-write instead of reading and parsing the file.

use anyhow::{anyhow, Context};
use std::path::Path;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The edge worker, built for this `rill` by build.rs.
pub const EDGE_WASM: &[u8] = include_bytes!(env!("RILL_EDGE_WASM"));

/// What the worker may reach while it preloads: the model's folder, read-only, and stderr.
struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: wasmtime_wasi_http::default_hooks() }
    }
}

pub fn bake(model: &Path, out: &Path) -> anyhow::Result<()> {
    let model = model.canonicalize().with_context(|| format!("opening {}", model.display()))?;
    let (dir, name) = (model.parent().expect("a file has a folder"), model.file_name().expect("a file has a name"));
    let engine = wasmtime::Engine::new(&wasmtime::Config::new()).map_err(|e| anyhow!("configuring wasmtime: {e:#}"))?;
    let wasi = WasiCtxBuilder::new()
        .preopened_dir(dir, "/models", FsPerms::ReadOnly)
        .map_err(|e| anyhow!("preopening {}: {e:#}", dir.display()))?
        .env("RILL_MODEL", format!("/models/{}", name.to_string_lossy()))
        .inherit_stderr()
        .build();
    let mut store = wasmtime::Store::new(&engine, State { wasi, http: WasiHttpCtx::new(), table: ResourceTable::new() });
    // The snapshot copies the whole memory (the model with it) out through component calls.
    store.set_hostcall_fuel(usize::MAX);
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("linking WASI: {e:#}"))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(|e| anyhow!("linking wasi:http: {e:#}"))?;
    let mut wizer = wasmtime_wizer::Wizer::new();
    wizer.init_func("preload");
    // The component still exports `preload` (a no-op once loaded); its core function must stay.
    wizer.keep_init_func(true);
    eprintln!("rill bake: loading {} into the worker …", model.display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (baked, _) = runtime
        .block_on(wizer.run_component(&mut store, EDGE_WASM, async |store, component| linker.instantiate_async(store, component).await))
        .map_err(|e| anyhow!("the worker could not load {} (its message is above): {e:#}", model.display()))?;
    std::fs::write(out, &baked).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("rill bake: wrote {} ({} MB)", out.display(), baked.len() >> 20);
    Ok(())
}
