//! Kernel throughput: GB/s of weight bytes each format's kernels consume, per path.
//!
//!     cargo bench -p rill-kernels                            # native (scalar, AVX2)
//!     cargo bench -p rill-kernels --target wasm32-wasip2     # in wasmtime (scalar, simd128)
//!
//! `matvec` streams a 64 MiB weight matrix against one activation row (decode's shape: memory
//! bound when the kernel keeps up); `matmul ×8` multiplies it with 8 activation rows at once
//! (batched decode's shape: each weight row is unpacked once per tile of rows), counted as 8
//! passes over the weights; `in L2` repeats the matvec on a 256 KiB matrix that stays in the
//! L2 cache (compute bound; like decode's layer matrices, it quantises the activation row on
//! every call, which at K = 4096 is about a quarter of the time).
//! `--k=N` sets the row length (default 4096): `--k=640` is the reference model's Q5_0 and Q8_0
//! rows; formats whose blocks do not divide it are left out.
//! The first line measures plain memory read bandwidth on the same machine for comparison.

use rill_kernels::{matmul, KernelPath, QuantType};
use std::hint::black_box;
use std::time::{Duration, Instant};

const DEFAULT_K: usize = 4096;
const MATRIX_BYTES: usize = 64 << 20;
const CACHED_BYTES: usize = 256 << 10;

/// Fastest of `reps` runs of `f`.
fn best_of(reps: usize, mut f: impl FnMut()) -> Duration {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn gbps(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

/// Weight bytes that decode to small finite values: every byte 0x11 except scales set to 1/64.
fn weights(ty: QuantType, row_bytes: usize, rows: usize) -> Vec<u64> {
    let mut data = vec![0x1111_1111_1111_1111u64; (rows * row_bytes).div_ceil(8)];
    let bytes: &mut [u8] = &mut bytemuck::cast_slice_mut(&mut data)[..rows * row_bytes];
    let scale = half::f16::from_f32(1.0 / 64.0).to_le_bytes();
    for block in bytes.chunks_exact_mut(ty.type_size()) {
        for &o in ty.f16_scale_offsets() {
            block[o..o + 2].copy_from_slice(&scale);
        }
    }
    data
}

fn memory_read_gbps() -> f64 {
    let data = vec![1u64; MATRIX_BYTES / 8];
    let t = best_of(5, || {
        // Four independent sums so the loop is limited by loads, not by the add chain.
        let mut s = [0u64; 4];
        for c in data.chunks_exact(4) {
            for i in 0..4 {
                s[i] = s[i].wrapping_add(c[i]);
            }
        }
        black_box(s);
    });
    gbps(MATRIX_BYTES, t)
}

fn main() {
    // `cargo bench` passes --bench; a filter argument selects formats by name.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let k_arg = std::env::args().find_map(|a| {
        a.strip_prefix("--k=")
            .map(|k| k.parse::<usize>().expect("--k=N takes a row length"))
    });
    let k = k_arg.unwrap_or(DEFAULT_K);
    let target = if cfg!(target_arch = "wasm32") {
        "wasm32 (wasmtime)"
    } else {
        std::env::consts::ARCH
    };
    println!("rill-kernels throughput on {target}, K = {k}; GB/s of weight bytes");
    println!("memory read bandwidth: {:.1} GB/s\n", memory_read_gbps());
    println!("| format | path | matvec GB/s | matmul ×8 GB/s | in L2 GB/s |");
    println!("| --- | --- | ---: | ---: | ---: |");
    let x: Vec<f32> = (0..k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let weight_types = QuantType::ALL.into_iter().filter(|t| t.vec_dot_type().is_some());
    for ty in weight_types.filter(|t| filter.is_empty() || filter.iter().any(|f| f == t.name())) {
        let Some(row_bytes) = ty.row_bytes(k) else {
            println!("| {ty} | rows of {k} are not whole blocks | | | |");
            continue;
        };
        let rows = MATRIX_BYTES / row_bytes;
        let w = weights(ty, row_bytes, rows);
        let w: &[u8] = &bytemuck::cast_slice(&w)[..rows * row_bytes];
        let mut out = vec![0f32; rows];
        let x8: Vec<f32> = (0..8).flat_map(|_| x.iter().copied()).collect();
        let mut out8 = vec![0f32; 8 * rows];
        for path in KernelPath::available() {
            let t_mv = best_of(3, || matmul(path, ty, w, &x, k, &mut out).unwrap());
            let t_mm = best_of(3, || matmul(path, ty, w, &x8, k, &mut out8).unwrap());
            // A cache-resident matrix, repeated until a quarter of the big one's bytes have passed.
            let cached_rows = (CACHED_BYTES / row_bytes).max(1);
            let cached = &w[..cached_rows * row_bytes];
            let reps = rows / cached_rows / 4;
            let t_cached = best_of(3, || {
                for _ in 0..reps {
                    matmul(path, ty, black_box(cached), &x, k, &mut out[..cached_rows]).unwrap();
                }
            });
            let cached_gbps = gbps(reps * cached_rows * row_bytes, t_cached);
            println!(
                "| {ty} | {path} | {:.1} | {:.1} | {cached_gbps:.1} |",
                gbps(rows * row_bytes, t_mv),
                gbps(8 * rows * row_bytes, t_mm)
            );
        }
    }
}
