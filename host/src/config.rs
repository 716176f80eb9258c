//! `rill.toml`: settings for every command, overridden by command-line flags.
//!
//! Found at `--config PATH`, else `$RILL_CONFIG`, else `$XDG_CONFIG_HOME/rill/rill.toml`
//! (`~/.config/rill/rill.toml`) when that file exists; with none, the defaults apply.
//! Unknown keys are errors (a typo must not silently fall back to a default), and every value
//! is range-checked with a message that names its key.

use crate::backend::BackendKind;
use anyhow::{bail, Context};
use rill_engine::model::{LoadOptions, RopeScalingOptions};
use rill_engine::settings::GenerationSettings;
use rill_engine::GenerateParams;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The engine is a 32-bit Wasm component: its memory cannot exceed 4 GiB.
const MAX_MEMORY_MIB: u64 = 4096;
/// Below this not even the smallest model and its buffers fit.
const MIN_MEMORY_MIB: u64 = 64;
/// KV positions above this are a typo, not a plan.
const MAX_CONTEXT: usize = 1 << 20;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// A GGUF file path (relative to this file) or a known model name (`rill pull --list`).
    pub model: String,
    /// Where `rill pull` keeps models, relative to this file (default `$XDG_CACHE_HOME/rill/models`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models_dir: Option<PathBuf>,
    /// Where the engine runs: `auto` (the component on a hardware GPU when there is one, else on
    /// the CPU), `gpu` (on any GPU adapter, a software one included), `component` (the CPU) or
    /// `native` (the engine crate in this process, for comparison).
    pub backend: BackendKind,
    /// Memory the engine component may use, in MiB (default: twice the model file plus 1 GiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_mib: Option<u64>,
    /// RoPE scaling for context extension, replacing the GGUF file's `rope.scaling.*` keys:
    /// `{ kind = "linear" | "yarn" | "none", factor = 4.0, original_context = 32768 }`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScalingOptions>,
    /// Defaults for each generation, every setting given (the engine's defaults under the
    /// file's `[generation]`); flags and request fields override them.
    pub generation: GenerationSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            model: crate::models::DEFAULT_MODEL.into(),
            models_dir: None,
            backend: BackendKind::Auto,
            memory_limit_mib: None,
            rope_scaling: None,
            generation: GenerationSettings::of(&GenerateParams::default()),
        }
    }
}

impl Config {
    /// Parses and checks a config file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        // Every setting given: the engine's defaults under the file's.
        config.generation = GenerationSettings::of(&config.generate_params());
        config.validate().with_context(|| origin.to_string())?;
        Ok(config)
    }

    /// Reads the config file `explicit` names, or the one found by the search order above.
    /// Returns it with the path it came from (None: defaults).
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<(Config, Option<PathBuf>)> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => std::env::var_os("RILL_CONFIG").map(PathBuf::from).or_else(|| {
                let found = crate::dirs::config_home().join("rill/rill.toml");
                found.exists().then_some(found)
            }),
        };
        let Some(path) = path else {
            return Ok((Config::default(), None));
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading config {}", path.display()))?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        config.paths_relative_to(path.parent().unwrap_or(Path::new(".")));
        Ok((config, Some(path)))
    }

    /// Relative paths in a file mean relative to that file, wherever rill is started from.
    fn paths_relative_to(&mut self, base: &Path) {
        let model = Path::new(&self.model);
        // A bare name ("gemma-3-270m-q4_k_m") is a model name, not a path.
        let is_path = self.model.contains(std::path::MAIN_SEPARATOR) || self.model.ends_with(".gguf");
        if is_path && model.is_relative() {
            self.model = base.join(model).display().to_string();
        }
        if let Some(dir) = self.models_dir.as_mut().filter(|d| d.is_relative()) {
            *dir = base.join(&*dir);
        }
    }

    /// Checks every value's range; the error names the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.model.trim().is_empty() {
            bail!("model must name a GGUF file or a known model");
        }
        if let Some(m) = self.memory_limit_mib {
            if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&m) {
                bail!("memory_limit_mib = {m} is out of range: it must be {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} (the engine is a 32-bit Wasm component)");
            }
        }
        if let Some(r) = &self.rope_scaling {
            if !(r.factor.is_finite() && r.factor >= 1.0) {
                bail!(
                    "rope_scaling.factor = {} is out of range: it must be at least 1",
                    r.factor
                );
            }
            if let Some(n) = r.original_context.filter(|n| !(1..=MAX_CONTEXT).contains(n)) {
                bail!("rope_scaling.original_context = {n} is out of range: it must be 1..={MAX_CONTEXT}");
            }
        }
        let g = self.generate_params();
        if !(1..=MAX_CONTEXT).contains(&g.context) {
            bail!(
                "generation.context = {} is out of range: it must be 1..={MAX_CONTEXT}",
                g.context
            );
        }
        if g.max_tokens == 0 {
            bail!("generation.max_tokens = 0 is out of range: it must be at least 1");
        }
        g.sampling.validate().map_err(|e| anyhow::anyhow!("generation.{e}"))
    }

    /// Lays `over` on the generation settings (the flags over the file): what it sets wins.
    pub fn override_generation(&mut self, over: &GenerationSettings) {
        let mut params = self.generate_params();
        over.apply(&mut params);
        self.generation = GenerationSettings::of(&params);
    }

    /// The parameters of a generation with these settings (no stop strings, no log-probabilities).
    pub fn generate_params(&self) -> GenerateParams {
        let mut params = GenerateParams::default();
        self.generation.apply(&mut params);
        params
    }

    /// How the engine builds the model.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            rope_scaling: self.rope_scaling,
        }
    }

    /// Where models are kept: `models_dir`, else `$XDG_CACHE_HOME/rill/models`.
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(crate::models::default_dir)
    }

    /// The configured model's file, fetched first if it is a known name not yet cached.
    pub fn model_path(&self) -> anyhow::Result<PathBuf> {
        crate::models::resolve(&self.model, &self.models_dir())
    }

    /// Loads the model file at `path` on the configured backend, within the memory limit.
    pub fn open_backend(&self, path: &Path) -> anyhow::Result<Box<dyn crate::backend::Backend>> {
        self.open_backend_on(self.backend, path)
    }

    /// The same on backend `kind` (the CPU component, once a GPU has failed).
    pub fn open_backend_on(&self, kind: BackendKind, path: &Path) -> anyhow::Result<Box<dyn crate::backend::Backend>> {
        crate::backend::open(
            kind,
            path,
            &self.load_options(),
            self.memory_limit_mib.map(|m| (m as usize) << 20),
        )
    }

    /// The config as `rill.toml` text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a Config always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_engine::ContextPolicy;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("", "t").unwrap(), Config::default());
    }

    #[test]
    fn shown_config_parses_back_to_itself() {
        let c = Config::parse(
            "model = \"x.gguf\"\nmemory_limit_mib = 900\n[generation]\ntop_k = 7\n",
            "t",
        )
        .unwrap();
        assert_eq!(Config::parse(&c.to_toml(), "t").unwrap(), c);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = Config::parse("[generation]\ntemprature = 0.5\n", "rill.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rill.toml") && e.contains("temprature"), "{e}");
        let e = Config::parse("colour = 1\n", "t").unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn wrong_types_are_rejected() {
        let e = Config::parse("[generation]\ntop_k = \"many\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("top_k"), "{e}");
        let e = Config::parse("backend = \"cuda\"\n", "t").unwrap_err().to_string();
        assert!(e.contains("backend"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        for (text, key) in [
            ("memory_limit_mib = 5000", "memory_limit_mib"),
            ("memory_limit_mib = 1", "memory_limit_mib"),
            ("[generation]\ncontext = 0", "generation.context"),
            ("[generation]\nmax_tokens = 0", "generation.max_tokens"),
            ("[generation]\ntop_p = 1.5", "generation.top_p"),
            ("[generation]\ntemperature = -1.0", "generation.temperature"),
            ("[generation]\npresence_penalty = 3.0", "generation.presence_penalty"),
            ("model = \" \"", "model"),
            ("[rope_scaling]\nkind = \"yarn\"\nfactor = 0.5", "rope_scaling.factor"),
            ("[rope_scaling]\nkind = \"cubic\"\nfactor = 2.0", "cubic"),
            ("[generation]\non_full_context = \"shift\"", "shift:N"),
        ] {
            let e = format!("{:#}", Config::parse(text, "t").unwrap_err());
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn context_policy_and_rope_scaling_read_back() {
        let c = Config::parse(
            "[rope_scaling]\nkind = \"yarn\"\nfactor = 4.0\n[generation]\non_full_context = \"shift:64\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.generation.on_full_context, Some(ContextPolicy::Shift { keep: 64 }));
        let r = c.rope_scaling.unwrap();
        assert_eq!((r.factor, r.original_context), (4.0, None));
        assert_eq!(Config::parse(&c.to_toml(), "t").unwrap(), c);
        let error = Config::parse("[generation]\non_full_context = \"error\"\n", "t").unwrap();
        assert_eq!(error.generation.on_full_context, Some(ContextPolicy::Error));
    }
}
