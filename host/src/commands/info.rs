//! `rill info`: what this machine has and what the engine chooses from it.

use crate::backend::{component, BackendKind};
use crate::config::Config;
use crate::gpu::{self, AdapterReport};
use crate::models;
use anyhow::Context;
use clap::ValueEnum;
use rill_engine::gguf::ChunkedReader;
use rill_engine::model::Config as ModelConfig;
use rill_kernels::KernelPath;
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// The first `key: value` line of a /proc file whose key is `key`.
fn proc_field(file: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

fn x86_features() -> Vec<&'static str> {
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$( if std::is_x86_feature_detected!($f) { found.push($f); } )*};
        }
        probe!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vnni",
            "avxvnni"
        );
    }
    found
}

/// The CPU's model name (the architecture where /proc/cpuinfo does not say).
pub fn cpu_name() -> String {
    proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The CPU as benchmark records name it: its model name and its widest vector instructions,
/// e.g. "AMD EPYC (avx512vnni)". Machines of one model name come with and without AVX-512,
/// and llama.cpp runs twice as fast with it, so runs compare only within one such class.
pub fn cpu_class() -> String {
    let features = x86_features();
    match ["avx512vnni", "avx512f", "avx2", "avx"]
        .into_iter()
        .find(|f| features.contains(f))
    {
        Some(widest) => format!("{} ({widest})", cpu_name()),
        None => cpu_name(),
    }
}

/// What the engine would choose for the configured model, read from its GGUF header.
pub struct ModelPlan {
    path: PathBuf,
    architecture: String,
    file_bytes: u64,
    pub kv_bytes_per_token: usize,
    /// llama.cpp's name for the file's quantisation mix (`general.file_type`), e.g. Q4_K_M.
    pub quant: String,
}

/// llama.cpp's `llama_ftype` names, by number.
fn file_type_name(t: u32) -> Option<&'static str> {
    Some(match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}

/// Reads just the header of `path` (a few MB), as the engine's loader does.
pub fn model_plan(path: &Path) -> anyhow::Result<ModelPlan> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let file_bytes = file.metadata()?.len();
    let mut reader = ChunkedReader::new(Some(file_bytes));
    let mut chunk = vec![0u8; 1 << 20];
    let header = loop {
        if let Some(h) = reader.header() {
            break h;
        }
        let n = file.read(&mut chunk)?;
        if n == 0 {
            anyhow::bail!("{}: the file ends inside its header", path.display());
        }
        reader
            .push(&chunk[..n])
            .with_context(|| format!("reading {}", path.display()))?;
    };
    let config =
        ModelConfig::from_gguf(header, &Default::default()).with_context(|| format!("reading {}", path.display()))?;
    let quant = header.u32("general.file_type").ok().map_or_else(
        || "unknown".into(),
        |t| file_type_name(t).map_or_else(|| format!("type {t}"), str::to_string),
    );
    Ok(ModelPlan {
        path: path.to_path_buf(),
        architecture: header.architecture()?.to_string(),
        file_bytes,
        kv_bytes_per_token: config.kv_bytes_per_token(),
        quant,
    })
}

pub fn info(format: Format, config: &Config, models_dir: &Path) -> anyhow::Result<()> {
    let cpu = cpu_name();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let memory_kib: u64 = proc_field("/proc/meminfo", "MemTotal")
        .and_then(|v| v.trim_end_matches(" kB").parse().ok())
        .unwrap_or(0);
    let features = x86_features();
    let (component_path, simd128, relaxed_simd) = component::capabilities()?;
    let adapters = gpu::adapters();
    let choice = backend_choice(config.backend, &adapters);
    let native_path = KernelPath::best().name();
    let context = config.generate_params().context;
    // The model is described only when it is on disk: `info` never downloads.
    let plan = models::locate(&config.model, models_dir)
        .map(|p| model_plan(&p))
        .transpose()?;
    let memory_limit = |p: &ModelPlan| {
        config
            .memory_limit_mib
            .map_or(component::default_memory_limit(p.file_bytes), |m| (m as usize) << 20)
    };
    match format {
        Format::Json => {
            let model = plan.as_ref().map(|p| {
                json!({
                    "path": p.path, "architecture": p.architecture, "quant": p.quant, "file_bytes": p.file_bytes,
                    "kv_bytes_per_token": p.kv_bytes_per_token,
                    "kv_budget_bytes": p.kv_bytes_per_token * context,
                    "component_memory_limit_bytes": memory_limit(p),
                })
            });
            println!(
                "{}",
                json!({
                    "cpu": cpu, "cores": cores, "memory_bytes": memory_kib * 1024, "x86_features": features,
                    "component": { "kernel_path": component_path, "simd128": simd128, "relaxed_simd": relaxed_simd, "threads": 1 },
                    "native": { "kernel_path": native_path, "threads": 1 },
                    "gpu_adapters": adapters.iter().map(|a| json!({
                        "name": a.info.device, "type": a.info.architecture, "backend": a.backend,
                        "software": a.info.is_fallback_adapter, "driver": a.info.description,
                        "features": a.features,
                        "max_storage_buffer_binding_size": a.limits.max_storage_buffer_binding_size,
                        "max_buffer_size": a.limits.max_buffer_size,
                        "max_compute_workgroup_storage_size": a.limits.max_compute_workgroup_storage_size,
                    })).collect::<Vec<_>>(),
                    "backend": { "configured": config.backend, "runs": choice.0, "why": choice.1 },
                    "context": context,
                    "model": model,
                })
            )
        }
        Format::Text => {
            let mib = |b: usize| b as f64 / (1 << 20) as f64;
            println!(
                "cpu:            {cpu}, {cores} logical cores, {:.1} GiB memory",
                memory_kib as f64 / (1 << 20) as f64
            );
            println!(
                "x86 features:   {}",
                if features.is_empty() {
                    "none detected".into()
                } else {
                    features.join(" ")
                }
            );
            println!(
                "component:      kernels {component_path} (simd128 {}, relaxed-simd {}), 1 thread",
                yes(simd128),
                yes(relaxed_simd)
            );
            println!("native backend: kernels {native_path}, 1 thread");
            if adapters.is_empty() {
                println!("gpu adapters:   none (on Linux: a Vulkan driver, e.g. mesa-vulkan-drivers)");
            }
            for (i, a) in adapters.iter().enumerate() {
                println!(
                    "{}{} ({}, {}{}; features: {}; binds {:.0} MiB)",
                    if i == 0 { "gpu adapters:   " } else { "                " },
                    a.info.device,
                    a.info.architecture,
                    a.backend,
                    if a.info.is_fallback_adapter { ", software" } else { "" },
                    if a.features.is_empty() {
                        "none".into()
                    } else {
                        a.features.join(" ")
                    },
                    a.limits.max_storage_buffer_binding_size as f64 / (1 << 20) as f64
                );
            }
            println!(
                "backend:        {} runs {}: {}",
                backend_name(config.backend),
                choice.0,
                choice.1
            );
            println!("context:        {context} positions");
            match &plan {
                Some(p) => {
                    println!(
                        "model:          {} ({} {}, {:.0} MiB)",
                        p.path.display(),
                        p.architecture,
                        p.quant,
                        mib(p.file_bytes as usize)
                    );
                    println!(
                        "KV cache:       {:.1} KiB per position, {:.0} MiB at {context} positions",
                        p.kv_bytes_per_token as f64 / 1024.0,
                        mib(p.kv_bytes_per_token * context)
                    );
                    println!("memory limit:   {:.0} MiB for the component", mib(memory_limit(p)));
                }
                None => println!(
                    "model:          {} (not on disk yet; `rill pull` fetches it)",
                    config.model
                ),
            }
        }
    }
    Ok(())
}
fn backend_name(kind: BackendKind) -> String {
    kind.to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

/// Where `kind` puts the engine on this machine, and why.
fn backend_choice(kind: BackendKind, adapters: &[AdapterReport]) -> (String, String) {
    let hardware = adapters.iter().find(|a| !a.info.is_fallback_adapter);
    match (kind, hardware, adapters.first()) {
        (BackendKind::Auto, Some(a), _) => (
            format!("the component on {}", a.info.device),
            "a hardware GPU adapter".into(),
        ),
        (BackendKind::Auto, None, Some(a)) => (
            "the component on the CPU".into(),
            format!(
                "the only adapter, {}, is software (`--backend gpu` uses it)",
                a.info.device
            ),
        ),
        (BackendKind::Auto, None, None) => ("the component on the CPU".into(), "no GPU adapter".into()),
        (BackendKind::Gpu, _, Some(a)) => (format!("the component on {}", a.info.device), "the best adapter".into()),
        (BackendKind::Gpu, _, None) => ("nothing".into(), "no GPU adapter: loading a model fails".into()),
        (BackendKind::Component, ..) => ("the component on the CPU".into(), "as configured".into()),
        (BackendKind::Native, ..) => ("the engine crate natively on the CPU".into(), "as configured".into()),
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
