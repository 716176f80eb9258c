//! The forward pass on the GPU (wgpu; Mesa's lavapipe where there is no hardware adapter, as
//! in CI) against llama.cpp's outputs, with the same tolerances as the CPU paths, and the
//! batched GPU path against each sequence alone.

#[path = "../../component/tests/common/mod.rs"]
mod common;

use common::reference::{greedy_decoding_matches, step0_logits_match};
use half::{bf16, f16};
use rill_engine::gguf::Gguf;
use rill_engine::gpu::{Binding, BufferId, GpuApi};
use rill_engine::model::{KvType, Logits, Model, SeqInput, SeqLogits, TOP_K};
use rill_engine::sampler::top_logprobs;
use rill_engine::Engine;
use rill_host::gpu::{self, AdapterChoice};
use rill_kernels::{wgsl, KernelPath, QuantType};
use std::sync::Arc;

/// The reference model on the best adapter this machine has (a software one included).
fn model_on_gpu() -> Model {
    let file = Arc::new(common::model_bytes());
    let gguf = Gguf::parse(&file).unwrap();
    let mut model = Model::new(&gguf, file, KernelPath::best(), &Default::default()).unwrap();
    let device = gpu::open(AdapterChoice::Any).expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)");
    eprintln!("on {}", device.adapter_info());
    model.use_gpu(Arc::new(device), &mut |_| {}).unwrap();
    model
}

/// The CPU's tolerances for each KV cache type (conformance.rs).
#[test]
fn step0_logits_on_the_gpu_match_llama_cpp() {
    let model = model_on_gpu();
    for (ty, mean_limit) in [(KvType::F16, 0.3), (KvType::Q8_0, 0.35)] {
        eprintln!("{ty:?} KV cache:");
        step0_logits_match(&model, ty, mean_limit);
    }
}

#[test]
fn greedy_decoding_on_the_gpu_matches_llama_cpp() {
    let model = model_on_gpu();
    for ty in [KvType::F16, KvType::Q8_0] {
        greedy_decoding_matches(&model, ty);
    }
}

/// The most likely tokens found on the GPU (`Logits::Top`, reading back 520 bytes a sequence)
/// are those of the whole row read back, in the same order, with the same log-probabilities.
#[test]
fn the_gpus_top_logits_are_the_rows_most_likely_tokens() {
    let model = model_on_gpu();
    let prompts: [&[u32]; 2] = [&[2, 818, 5279, 529, 7001, 563], &[2, 9259, 236764, 1217]];
    let run = |want: Logits| {
        let mut caches: Vec<_> = prompts
            .iter()
            .map(|_| model.new_cache(KvType::F16, 64).unwrap())
            .collect();
        let mut inputs: Vec<SeqInput> = prompts
            .iter()
            .zip(caches.iter_mut())
            .map(|(tokens, cache)| SeqInput { tokens, cache, want })
            .collect();
        model.forward_batch(&mut inputs).unwrap()
    };
    for (rows, tops) in run(Logits::Last).into_iter().zip(run(Logits::Top)) {
        let (SeqLogits::Rows(row), SeqLogits::Top(top)) = (rows, tops) else {
            panic!("a row for Last and the top logits for Top");
        };
        let want = top_logprobs(&row, TOP_K);
        assert_eq!(top.candidates.len(), TOP_K);
        for ((id, logit), (want_id, want_logprob)) in top.candidates.iter().zip(want) {
            assert_eq!(*id, want_id);
            assert_eq!(*logit, row[*id as usize]);
            let logprob = logit - top.log_sum_exp;
            assert!(
                (logprob - want_logprob).abs() < 1e-3,
                "{id}: {logprob} against {want_logprob}"
            );
        }
    }
}

/// A step in which every sequence waits (for KV memory) runs nothing and answers nothing.
#[test]
fn an_empty_batch_on_the_gpu_answers_nothing() {
    let model = model_on_gpu();
    assert_eq!(model.forward_batch(&mut []).unwrap(), Vec::new());
    let mut cache = model.new_cache(KvType::F16, 8).unwrap();
    assert_eq!(
        model.forward(&[2, 818], &mut cache, Logits::Last).unwrap().len(),
        model.config.vocab_size
    );
}

/// The top-k kernels on rows whose length is not a whole number of runs (padding), with many
/// ties (broken by the lower id, as the CPU sampler breaks them), through one and two merges.
#[test]
fn the_top_k_kernels_find_each_rows_most_likely_in_the_samplers_order() {
    let device = gpu::open(AdapterChoice::Any).expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)");
    let compile = |k: wgsl::Kernel| device.create_pipeline(&k.source, k.entry, k.entry).unwrap();
    let (first, merge) = (compile(wgsl::top_k(false)), compile(wgsl::top_k(true)));
    let whole = |b: BufferId, size: usize| Binding {
        buffer: b,
        offset: 0,
        size: size as u64,
    };
    for vocab in [5000, 70_000] {
        let rows = 3;
        let logits: Vec<f32> = (0..rows * vocab)
            .map(|i| ((i * 7919) % 1000) as f32 / 10.0 - 50.0)
            .collect();
        let input = device.create_buffer((logits.len() * 4) as u64, "logits").unwrap();
        device.write_buffer(input, 0, bytemuck::cast_slice(&logits)).unwrap();
        // Each pass's output: (rows, runs, TOP_K) pairs of (value bits, id), then (rows, runs)
        // of (max, sum).
        let output = |runs: usize| {
            let (pairs, sums) = (rows * runs * wgsl::TOP_K * 8, rows * runs * 8);
            let b = device.create_buffer((pairs + sums) as u64, "top").unwrap();
            (b, pairs, sums)
        };
        let pass = |pipeline, params: [u32; 2], out: (BufferId, usize, usize), inputs: &[(u32, Binding)]| {
            let uniform = device.create_buffer(16, "params").unwrap();
            device.write_buffer(uniform, 0, bytemuck::cast_slice(&params)).unwrap();
            let (b, pairs, sums) = out;
            let mut entries = vec![
                (0, whole(uniform, 16)),
                (1, whole(b, pairs)),
                (
                    2,
                    Binding {
                        buffer: b,
                        offset: pairs as u64,
                        size: sums as u64,
                    },
                ),
            ];
            entries.extend_from_slice(inputs);
            let group = device.create_bind_group(pipeline, &entries).unwrap();
            device.dispatch(pipeline, group, [params[1], rows as u32, 1]);
        };
        let mut runs = vocab.div_ceil(wgsl::TOP_K_RUN);
        let mut out = output(runs);
        pass(
            first,
            [vocab as u32, runs as u32],
            out,
            &[(3, whole(input, logits.len() * 4))],
        );
        while runs > 1 {
            let merged = runs.div_ceil(wgsl::TOP_K_RUN / wgsl::TOP_K);
            let next = output(merged);
            let (b, pairs, sums) = out;
            let inputs = [
                (4, whole(b, pairs)),
                (
                    5,
                    Binding {
                        buffer: b,
                        offset: pairs as u64,
                        size: sums as u64,
                    },
                ),
            ];
            pass(merge, [runs as u32, merged as u32], next, &inputs);
            (out, runs) = (next, merged);
        }
        device.submit().unwrap();
        let raw = device.read_buffer(out.0, 0, (out.1 + out.2) as u64).unwrap();
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&raw);
        for r in 0..rows {
            let row = &logits[r * vocab..][..vocab];
            let mut want: Vec<(u32, f32)> = row.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let got: Vec<(u32, f32)> = words[r * wgsl::TOP_K * 2..][..wgsl::TOP_K * 2]
                .chunks_exact(2)
                .map(|p| (p[1], f32::from_bits(p[0])))
                .collect();
            assert_eq!(got, want[..wgsl::TOP_K], "vocabulary {vocab}, row {r}");
            let max = want[0].1 as f64;
            let lse = max + row.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
            let sum = &words[rows * wgsl::TOP_K * 2 + r * 2..][..2];
            let got_lse = f32::from_bits(sum[0]) as f64 + (f32::from_bits(sum[1]) as f64).ln();
            assert!(
                (got_lse - lse).abs() < 1e-4,
                "vocabulary {vocab}, row {r}: log-sum-exp {got_lse} against {lse}"
            );
        }
    }
}

/// Random blocks of `ty` for `rows` rows of `cols` values: random bits with finite, small f16
/// scales (the fields ggml-common.h puts them in), or random finite floats for float formats.
fn random_rows(ty: QuantType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let small = |r: u32| (r as f32 / u32::MAX as f32 - 0.5) * 0.2;
    let n = rows * cols;
    match ty {
        QuantType::F32 => (0..n).flat_map(|_| (small(next()) * 40.0).to_le_bytes()).collect(),
        QuantType::F16 => (0..n)
            .flat_map(|_| f16::from_f32(small(next()) * 40.0).to_le_bytes())
            .collect(),
        QuantType::BF16 => (0..n)
            .flat_map(|_| bf16::from_f32(small(next()) * 40.0).to_le_bytes())
            .collect(),
        _ => {
            let (size, per_block) = (ty.type_size(), ty.block_size());
            let scales: &[usize] = match ty {
                QuantType::Q4_1 | QuantType::Q5_1 | QuantType::Q4K | QuantType::Q5K => &[0, 2],
                QuantType::Q2K => &[80, 82],
                QuantType::Q3K => &[108],
                QuantType::Q6K => &[208],
                _ => &[0],
            };
            let mut bytes: Vec<u8> = (0..n / per_block * size).map(|_| next() as u8).collect();
            for block in bytes.chunks_exact_mut(size) {
                for &at in scales {
                    block[at..at + 2].copy_from_slice(&f16::from_f32(small(next())).to_le_bytes());
                }
            }
            bytes
        }
    }
}

/// Every weight format's mat-mul kernel against the scalar reference (dequantise, then an f32
/// product in f64): one token (decode), and more tokens than a workgroup takes, over a row
/// count that does not fill the last workgroup.
#[test]
fn every_formats_matmul_kernel_matches_the_scalar_reference() {
    let device = gpu::open(AdapterChoice::Any).expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)");
    let (rows, cols) = (37, 512);
    for ty in wgsl::WEIGHT_FORMATS {
        let w = random_rows(ty, rows, cols, ty as u64 + 1);
        let mut dense = vec![0f32; rows * cols];
        rill_kernels::dequantize(ty, &w, &mut dense).unwrap();
        let kernel = wgsl::matmul(ty, wgsl::MatmulVariant::PLAIN).unwrap();
        let packed = wgsl::repack(ty, &w);
        let pipeline = device
            .create_pipeline(&kernel.source, kernel.entry, kernel.entry)
            .unwrap();
        for n in [1, 11] {
            let x: Vec<f32> = (0..n * cols).map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0).collect();
            let buffer = |bytes: &[u8]| {
                let b = device.create_buffer(bytes.len() as u64, "test").unwrap();
                device.write_buffer(b, 0, bytes).unwrap();
                b
            };
            let params: [u32; 9] = [
                rows as u32,
                cols as u32,
                n as u32,
                (packed.len() / rows) as u32,
                0,
                rows as u32,
                0,
                0,
                0,
            ];
            let bound = [
                buffer(&packed),
                buffer(bytemuck::cast_slice(&x)),
                buffer(&vec![0u8; n * rows * 4]),
                buffer(bytemuck::cast_slice(&params)),
            ];
            let whole = |b: BufferId, len: usize| Binding {
                buffer: b,
                offset: 0,
                size: len.next_multiple_of(4) as u64,
            };
            let group = device
                .create_bind_group(
                    pipeline,
                    &[
                        (0, whole(bound[0], packed.len())),
                        (1, whole(bound[1], x.len() * 4)),
                        (2, whole(bound[3], 36)),
                        (3, whole(bound[2], n * rows * 4)),
                    ],
                )
                .unwrap();
            device.dispatch(pipeline, group, [rows.div_ceil(8) as u32, n.div_ceil(8) as u32, 1]);
            let raw = device.read_buffer(bound[2], 0, (n * rows * 4) as u64).unwrap();
            let got: Vec<f32> = bytemuck::pod_collect_to_vec(&raw);
            for t in 0..n {
                for r in 0..rows {
                    let want: f64 = (0..cols)
                        .map(|i| dense[r * cols + i] as f64 * x[t * cols + i] as f64)
                        .sum();
                    let scale: f64 = (0..cols)
                        .map(|i| (dense[r * cols + i] as f64 * x[t * cols + i] as f64).abs())
                        .sum();
                    let error = (got[t * rows + r] as f64 - want).abs();
                    assert!(
                        error <= 1e-5 * scale.max(1e-3),
                        "{ty}: token {t} row {r}: {} against {want} (sum of |terms| {scale})",
                        got[t * rows + r]
                    );
                }
            }
            for b in bound {
                device.destroy_buffer(b);
            }
        }
    }
}

/// Continuous batching on the GPU: generations stepped together make exactly what each makes
/// alone (each token's sums run in the same order whatever the batch).
#[test]
fn batched_generations_on_the_gpu_equal_each_one_alone() {
    let mut engine = Engine::load(common::model_bytes(), KernelPath::best(), &Default::default()).unwrap();
    let device = gpu::open(AdapterChoice::Any).expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)");
    engine.use_gpu(Arc::new(device), &mut |_| {}).unwrap();
    // Fewer tokens than the CPU test's: lavapipe takes about a second a token.
    common::batching::batched_generations_equal_each_one_alone(&Arc::new(engine), 4);
}
