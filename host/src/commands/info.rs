//! `rill info`: what this machine has and what the engine chooses from it.

use crate::backend::component;
use clap::ValueEnum;
use rill_kernels::KernelPath;
use serde_json::json;

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
        probe!("sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vnni", "avxvnni");
    }
    found
}

pub fn info(format: Format) -> anyhow::Result<()> {
    let cpu = proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let memory_kib: u64 = proc_field("/proc/meminfo", "MemTotal").and_then(|v| v.trim_end_matches(" kB").parse().ok()).unwrap_or(0);
    let features = x86_features();
    let (component_path, simd128, relaxed_simd) = component::capabilities()?;
    let native_path = KernelPath::best().name();
    match format {
        Format::Json => println!(
            "{}",
            json!({
                "cpu": cpu, "cores": cores, "memory_bytes": memory_kib * 1024, "x86_features": features,
                "component": { "kernel_path": component_path, "simd128": simd128, "relaxed_simd": relaxed_simd },
                "native": { "kernel_path": native_path },
                "default_context": crate::commands::run::DEFAULT_CONTEXT,
            })
        ),
        Format::Text => {
            println!("cpu:            {cpu}, {cores} logical cores, {:.1} GiB memory", memory_kib as f64 / (1 << 20) as f64);
            println!("x86 features:   {}", if features.is_empty() { "none detected".into() } else { features.join(" ") });
            println!("component:      kernels {component_path} (simd128 {}, relaxed-simd {})", yes(simd128), yes(relaxed_simd));
            println!("native backend: kernels {native_path}");
            println!("default context: {} positions", crate::commands::run::DEFAULT_CONTEXT);
        }
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
