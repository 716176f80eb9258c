//! Compiled components, cached on disk: a component is compiled once per wasmtime
//! configuration and its bytes, and later starts map the cached machine code.

use anyhow::anyhow;
use std::hash::{Hash, Hasher};
use wasmtime::component::Component;

/// `wasm` (called `name` in messages and the cache file's name) compiled for `engine`, from
/// `$XDG_CACHE_HOME/rill/compiled/` when this configuration has compiled these bytes before.
pub fn component(engine: &wasmtime::Engine, name: &str, wasm: &[u8]) -> anyhow::Result<Component> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    wasm.hash(&mut h);
    let path = crate::dirs::cache_home()
        .join("rill/compiled")
        .join(format!("{name}-{:016x}.cwasm", h.finish()));
    if path.exists() {
        // SAFETY: the file is one we wrote with this engine configuration (the key covers it).
        if let Ok(c) = unsafe { Component::deserialize_file(engine, &path) } {
            return Ok(c);
        }
    }
    let bytes = engine
        .precompile_component(wasm)
        .map_err(|e| anyhow!("compiling {name}: {e:#}"))?;
    // A cache that cannot be written only costs the next start a compile.
    if std::fs::create_dir_all(path.parent().unwrap()).is_ok() {
        // One temporary file per process: servers starting together must not write into
        // the file another is renaming into place (and others are mapping).
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        if std::fs::write(&tmp, &bytes).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    // SAFETY: just produced by `precompile_component` on this engine.
    unsafe { Component::deserialize(engine, &bytes) }.map_err(|e| anyhow!("loading the compiled {name}: {e:#}"))
}
