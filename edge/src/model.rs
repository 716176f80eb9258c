//! The instance's model: loaded once, on the first request that needs it.

use rill_api::{ApiError, ServedModel};
use rill_engine::model::LoadOptions;
use rill_engine::{Engine, GenerateParams};
use rill_kernels::KernelPath;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Where models are looked for when `RILL_MODEL` is not set (preopen a folder there).
const MODELS_DIR: &str = "/models";

pub struct LoadedModel {
    pub engine: Arc<Engine>,
    pub served: ServedModel,
}

static MODEL: OnceLock<Result<LoadedModel, ApiError>> = OnceLock::new();

/// The model, loading it first on this instance's first call. A model that failed to load
/// fails every request the same way (503, with the reason).
pub fn get() -> Result<&'static LoadedModel, ApiError> {
    MODEL.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<LoadedModel, ApiError> {
    let path = model_path()?;
    let unavailable = |what: String| ApiError::unavailable(format!("{}: {what}", path.display()));
    let file = std::fs::read(&path)
        .map_err(|e| unavailable(format!("cannot read the model ({e}); is its folder preopened (--dir)?")))?;
    let engine =
        Engine::load(file, KernelPath::best(), &LoadOptions::default()).map_err(|e| unavailable(e.to_string()))?;
    let id = path
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let vocab_size = engine.model.config.vocab_size;
    Ok(LoadedModel {
        engine: Arc::new(engine),
        served: ServedModel {
            id,
            created,
            vocab_size,
            defaults: GenerateParams::default(),
        },
    })
}

fn model_path() -> Result<PathBuf, ApiError> {
    if let Some(path) = std::env::var_os("RILL_MODEL") {
        return Ok(path.into());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(MODELS_DIR)
        .map_err(|e| ApiError::unavailable(format!("no model: RILL_MODEL is not set and {MODELS_DIR} cannot be listed ({e}); preopen a folder of GGUF files there")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    found.sort();
    found.into_iter().next().ok_or_else(|| {
        ApiError::unavailable(format!(
            "no model: RILL_MODEL is not set and {MODELS_DIR} holds no .gguf file"
        ))
    })
}
