//! `rill bake --model M -o worker.wasm`: the edge worker with the model already loaded in its
//! memory image. It instantiates the worker (built by build.rs) in wasmtime with the model's
//! folder preopened, calls its `preload` export, and has wasmtime's Wizer write the instance's
//! memory and globals out as the data of a new component. A host that gives every request a
//! fresh instance then maps that image copy-on-write instead of reading and parsing the file.

use crate::edge::{self, WorkerState};
use anyhow::{anyhow, Context};
use std::path::Path;

pub fn bake(model: &Path, out: &Path) -> anyhow::Result<()> {
    let model = model
        .canonicalize()
        .with_context(|| format!("opening {}", model.display()))?;
    let engine = wasmtime::Engine::new(&wasmtime::Config::new()).map_err(|e| anyhow!("configuring wasmtime: {e:#}"))?;
    let mut store = wasmtime::Store::new(&engine, WorkerState::new(Some(&model))?);
    // The snapshot copies the whole memory (the model with it) out through component calls.
    store.set_hostcall_fuel(usize::MAX);
    let linker = edge::linker(&engine)?;
    let mut wizer = wasmtime_wizer::Wizer::new();
    wizer.init_func("preload");
    // The component still exports `preload` (a no-op once loaded); its core function must stay.
    wizer.keep_init_func(true);
    eprintln!("rill bake: loading {} into the worker …", model.display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (baked, _) = runtime
        .block_on(
            wizer.run_component(&mut store, edge::EDGE_WASM, async |store, component| {
                linker.instantiate_async(store, component).await
            }),
        )
        .map_err(|e| {
            anyhow!(
                "the worker could not load {} (its message is above): {e:#}",
                model.display()
            )
        })?;
    std::fs::write(out, &baked).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("rill bake: wrote {} ({} MB)", out.display(), baked.len() >> 20);
    Ok(())
}

/// `rill bake --no-model`: the worker as built, for hosts that give it the model's folder.
pub fn write_plain(out: &Path) -> anyhow::Result<()> {
    std::fs::write(out, edge::EDGE_WASM).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "rill bake: wrote {} ({} MB, no model: preopen the model's folder as /models)",
        out.display(),
        edge::EDGE_WASM.len() >> 20
    );
    Ok(())
}
