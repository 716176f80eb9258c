//! The forward pass on the GPU (wgpu; Mesa's lavapipe where there is no hardware adapter, as
//! in CI) against llama.cpp's outputs, with the same tolerances as the CPU paths, and the
//! batched GPU path against each sequence alone.

#[path = "../../component/tests/common/mod.rs"]
mod common;

use common::reference::{greedy_decoding_matches, step0_logits_match};
use rill_engine::gguf::Gguf;
use rill_engine::model::{KvType, Model};
use rill_host::gpu::{self, AdapterChoice};
use rill_kernels::KernelPath;
use std::sync::Arc;

/// The reference model on the best adapter this machine has (a software one included).
fn model_on_gpu() -> Model {
    let file = Arc::new(common::model_bytes());
    let gguf = Gguf::parse(&file).unwrap();
    let mut model = Model::new(&gguf, file, KernelPath::best(), &Default::default()).unwrap();
    let device = gpu::open(AdapterChoice::Any).expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)");
    eprintln!("on {}", rill_engine::gpu::GpuApi::adapter_info(&device));
    model.use_gpu(Arc::new(device), &mut |_| {}).unwrap();
    model
}

#[test]
fn step0_logits_on_the_gpu_match_llama_cpp() {
    step0_logits_match(&model_on_gpu(), KvType::F16, 0.3);
}

#[test]
fn greedy_decoding_on_the_gpu_matches_llama_cpp() {
    greedy_decoding_matches(&model_on_gpu(), KvType::F16);
}
