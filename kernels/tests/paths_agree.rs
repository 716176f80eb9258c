//! Every kernel path against the scalar reference, and the scalar dot product against
//! dequantised values. Runs natively (scalar, AVX2, and AVX-512 VNNI where the CPU has it) and
//! on wasm32-wasip2 (scalar, simd128).

use half::{bf16, f16};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rill_kernels::{dequantize, matmul, quantize_activations, vec_dot, weighted_sum, KernelPath, QuantType};

const WEIGHT_TYPES: [QuantType; 13] = [
    QuantType::F32,
    QuantType::F16,
    QuantType::BF16,
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::Q2K,
    QuantType::Q3K,
    QuantType::Q4K,
    QuantType::Q5K,
    QuantType::Q6K,
];

/// Bytes in a u64 buffer so every block type is aligned.
struct Aligned(Vec<u64>, usize);
impl Aligned {
    fn new(len: usize) -> Self {
        Aligned(vec![0; len.div_ceil(8)], len)
    }
    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.0)[..self.1]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.0)[..self.1]
    }
}

/// `n` values of weight format `ty`: random bits, with every scale set to `scale` (or random
/// finite scales when `None`).
fn random_weights(rng: &mut SmallRng, ty: QuantType, n: usize, scale: Option<f32>) -> Aligned {
    let mut data = Aligned::new(ty.row_bytes(n).unwrap());
    let bytes = data.bytes_mut();
    rng.fill(bytes);
    let value = |rng: &mut SmallRng| scale.unwrap_or_else(|| rng.random_range(-2.0f32..2.0));
    match ty {
        QuantType::F32 => bytes
            .chunks_exact_mut(4)
            .for_each(|c| c.copy_from_slice(&value(rng).to_le_bytes())),
        QuantType::F16 => bytes
            .chunks_exact_mut(2)
            .for_each(|c| c.copy_from_slice(&f16::from_f32(value(rng)).to_le_bytes())),
        QuantType::BF16 => bytes
            .chunks_exact_mut(2)
            .for_each(|c| c.copy_from_slice(&bf16::from_f32(value(rng)).to_le_bytes())),
        _ => {
            for block in bytes.chunks_exact_mut(ty.type_size()) {
                for &off in ty.f16_scale_offsets() {
                    let v = scale.unwrap_or_else(|| rng.random_range(-0.05f32..0.05));
                    block[off..off + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
                }
            }
        }
    }
    data
}

fn quantized(ty: QuantType, x: &[f32]) -> Aligned {
    let act = ty.vec_dot_type().unwrap();
    let mut q = Aligned::new(act.row_bytes(x.len()).unwrap());
    quantize_activations(act, x, q.bytes_mut()).unwrap();
    q
}

fn dequantized(ty: QuantType, data: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0.0; n];
    dequantize(ty, data, &mut out).unwrap();
    out
}

fn random_activations(rng: &mut SmallRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect()
}

const N: usize = 4 * 256;

#[test]
fn every_path_matches_scalar_within_1e5() {
    let mut rng = SmallRng::seed_from_u64(1);
    for ty in WEIGHT_TYPES {
        for trial in 0..50 {
            let w = random_weights(&mut rng, ty, N, None);
            let x = random_activations(&mut rng, N);
            let a = quantized(ty, &x);
            let reference = vec_dot(KernelPath::SCALAR, ty, w.bytes(), a.bytes()).unwrap();
            // Scale for the tolerance: Σ|w·a|, so cancellation does not shrink it to nothing.
            let (wf, af) = (
                dequantized(ty, w.bytes(), N),
                dequantized(ty.vec_dot_type().unwrap(), a.bytes(), N),
            );
            let magnitude: f64 = wf.iter().zip(&af).map(|(w, a)| (*w as f64 * *a as f64).abs()).sum();
            for path in KernelPath::available() {
                let got = vec_dot(path, ty, w.bytes(), a.bytes()).unwrap();
                let err = (got as f64 - reference as f64).abs();
                assert!(
                    err <= 1e-5 * magnitude.max(1e-30),
                    "{ty} on {path}, trial {trial}: {got} vs scalar {reference} (scale {magnitude})"
                );
            }
        }
    }
}

#[test]
fn integer_sums_are_exact_on_every_path() {
    // With every scale 1 (and Q8_1's s = Σq, Q8_K's d = 1) the dot product is an integer
    // well below 2^24, so every path must return it exactly.
    let mut rng = SmallRng::seed_from_u64(2);
    for ty in WEIGHT_TYPES.into_iter().filter(|t| t.block_size() > 1) {
        let act = ty.vec_dot_type().unwrap();
        for _ in 0..20 {
            let w = random_weights(&mut rng, ty, N, Some(1.0));
            // Integer activations in -127..=127 quantise with d = 127/127 = 1 when one value is ±127.
            let mut x: Vec<f32> = (0..N).map(|_| rng.random_range(-127..=127) as f32).collect();
            for block in x.chunks_exact_mut(act.block_size()) {
                block[0] = if act == QuantType::Q8K { -127.0 } else { 127.0 };
            }
            let a = quantized(ty, &x);
            assert_eq!(dequantized(act, a.bytes(), N), x, "{act} quantises integers exactly");
            let reference = vec_dot(KernelPath::SCALAR, ty, w.bytes(), a.bytes()).unwrap();
            assert_eq!(reference.fract(), 0.0, "{ty}: {reference}");
            for path in KernelPath::available() {
                assert_eq!(
                    vec_dot(path, ty, w.bytes(), a.bytes()).unwrap(),
                    reference,
                    "{ty} on {path}"
                );
            }
        }
    }
}

/// The x86 paths differ only in how they do exact integer multiply-adds, so they must agree bit
/// for bit, in matmul tiles too (the engine's output must not depend on which CPU ran it).
#[test]
fn x86_simd_paths_agree_bit_for_bit() {
    let simd: Vec<KernelPath> = KernelPath::available()
        .into_iter()
        .filter(|p| *p != KernelPath::SCALAR)
        .collect();
    let Some((&first, others)) = simd.split_first() else {
        return;
    };
    let mut rng = SmallRng::seed_from_u64(5);
    let (k, rows, tokens) = (N, 3, 7); // tiles of 4 and 2, one token
    for ty in WEIGHT_TYPES {
        let w = random_weights(&mut rng, ty, k * rows, None);
        let x = random_activations(&mut rng, k * tokens);
        let mut expected = vec![0.0; rows * tokens];
        matmul(first, ty, w.bytes(), &x, k, &mut expected).unwrap();
        for &path in others {
            let mut out = vec![0.0; rows * tokens];
            matmul(path, ty, w.bytes(), &x, k, &mut out).unwrap();
            assert_eq!(out, expected, "{ty}: {path} vs {first}");
        }
    }
}

/// A matmul quantises its activation rows on its own path (AVX2 has its own Q8_0 quantiser):
/// against one-hot Q8_0 weight rows it returns the quantised activations, which must be the
/// scalar quantiser's on every path, halfway cases, zero blocks and tiny scales included.
#[test]
fn matmul_quantises_activations_as_the_scalar_code_does() {
    let k = 128;
    let mut w = Aligned::new(QuantType::Q8_0.row_bytes(k * k).unwrap());
    for (r, row) in w
        .bytes_mut()
        .chunks_exact_mut(QuantType::Q8_0.row_bytes(k).unwrap())
        .enumerate()
    {
        let block = &mut row[r / 32 * 34..][..34];
        block[..2].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
        block[2 + r % 32] = 1;
    }
    let mut rng = SmallRng::seed_from_u64(6);
    let tokens: Vec<Vec<f32>> = vec![
        (0..k)
            .map(|i| if i % 32 == 0 { 127.0 } else { (i as f32 - 64.0) + 0.5 })
            .collect(),
        (0..k)
            .map(|i| {
                if i < 32 {
                    0.0
                } else if i % 2 == 0 {
                    -0.0
                } else {
                    1e-30 * i as f32
                }
            })
            .collect(),
        (0..k)
            .map(|i| f32::from_bits((i as f32 + 0.5).to_bits() + (i % 3) as u32 - 1))
            .collect(),
        random_activations(&mut rng, k),
        random_activations(&mut rng, k).iter().map(|v| v * 1e6).collect(),
    ];
    let x: Vec<f32> = tokens.concat();
    for path in KernelPath::available() {
        let mut out = vec![0.0; k * tokens.len()];
        matmul(path, QuantType::Q8_0, w.bytes(), &x, k, &mut out).unwrap();
        for (t, row) in tokens.iter().enumerate() {
            let expected = dequantized(QuantType::Q8_0, quantized(QuantType::Q8_0, row).bytes(), k);
            let got = &out[t * k..(t + 1) * k];
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "token {t} on {path}"
            );
        }
    }
}

#[test]
fn scalar_dot_equals_dot_of_dequantized_values() {
    let mut rng = SmallRng::seed_from_u64(3);
    for ty in WEIGHT_TYPES {
        let w = random_weights(&mut rng, ty, N, None);
        let x = random_activations(&mut rng, N);
        let a = quantized(ty, &x);
        let (wf, af) = (
            dequantized(ty, w.bytes(), N),
            dequantized(ty.vec_dot_type().unwrap(), a.bytes(), N),
        );
        let expected: f64 = wf.iter().zip(&af).map(|(w, a)| *w as f64 * *a as f64).sum();
        let magnitude: f64 = wf.iter().zip(&af).map(|(w, a)| (*w as f64 * *a as f64).abs()).sum();
        let got = vec_dot(KernelPath::SCALAR, ty, w.bytes(), a.bytes()).unwrap() as f64;
        assert!((got - expected).abs() <= 1e-5 * magnitude, "{ty}: {got} vs {expected}");
    }
}

#[test]
fn matmul_is_a_vec_dot_per_row_and_token() {
    let mut rng = SmallRng::seed_from_u64(4);
    // Tiles are 8 tokens in wasm, 4 on x86, then one of 4 and one of 2 for what is left: 15
    // tokens take every size on both.
    let (k, rows, tokens) = (512, 5, 15);
    for ty in WEIGHT_TYPES {
        let w = random_weights(&mut rng, ty, k * rows, None);
        let x = random_activations(&mut rng, k * tokens);
        let row_bytes = ty.row_bytes(k).unwrap();
        for path in KernelPath::available() {
            let mut out = vec![0.0; rows * tokens];
            matmul(path, ty, w.bytes(), &x, k, &mut out).unwrap();
            for t in 0..tokens {
                let a = quantized(ty, &x[t * k..(t + 1) * k]);
                for r in 0..rows {
                    let expected =
                        vec_dot(path, ty, &w.bytes()[r * row_bytes..(r + 1) * row_bytes], a.bytes()).unwrap();
                    assert_eq!(out[t * rows + r], expected, "{ty} on {path}, token {t}, row {r}");
                }
            }
        }
    }
}

#[test]
fn shape_and_format_errors_are_reported_not_panicked() {
    let w = Aligned::new(QuantType::Q4K.type_size());
    let a = Aligned::new(QuantType::Q8K.type_size() * 2);
    assert!(vec_dot(KernelPath::SCALAR, QuantType::Q4K, w.bytes(), a.bytes()).is_err());
    assert!(vec_dot(KernelPath::SCALAR, QuantType::Q4K, &w.bytes()[1..], a.bytes()).is_err());
    assert!(vec_dot(KernelPath::SCALAR, QuantType::Q8K, a.bytes(), a.bytes()).is_err());
    let mut out = vec![0.0; 3];
    assert!(matmul(
        KernelPath::SCALAR,
        QuantType::Q4K,
        w.bytes(),
        &[0.0; 256],
        256,
        &mut out
    )
    .is_err());
    assert!(quantize_activations(QuantType::Q4_0, &[0.0; 32], &mut [0u8; 18]).is_err());
}

#[test]
fn the_best_path_is_simd_where_the_target_has_it() {
    let best = KernelPath::best().name();
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    assert_eq!(best, "simd128");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
    {
        use std::is_x86_feature_detected as has;
        let vnni = has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512vnni");
        assert_eq!(best, if vnni { "avx512vnni" } else { "avx2" });
    }
    #[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
    assert_eq!(best, "scalar");
}

/// On wasm F16 rows are dequantised by the SIMD conversion (the KV cache reads them every step):
/// every f16, odd lengths included, must come out as half's conversion gives it.
#[test]
fn f16_dequantises_to_halfs_values() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    for len in [all.len(), 7, 1] {
        let src = &all[all.len() - len..];
        let mut out = vec![0.0; len];
        dequantize(QuantType::F16, bytemuck::cast_slice(src), &mut out).unwrap();
        for (&h, &v) in src.iter().zip(&out) {
            let expected = f16::from_bits(h).to_f32();
            assert!(
                v.to_bits() == expected.to_bits() || v.is_nan() && expected.is_nan(),
                "{h:#06x}: {v} ≠ {expected}"
            );
        }
    }
    assert!(dequantize(QuantType::F16, &[0; 4], &mut [0.0; 3]).is_err());
}

/// `weighted_sum` on `path` of `weights` against rows of `n` values, `stride` apart.
fn weighted(path: KernelPath, weights: &[f32], rows: &[f32], stride: usize, n: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; n];
    weighted_sum(path, weights, rows, stride, &mut out).unwrap();
    out
}

#[test]
fn weighted_sums_match_scalar_on_every_path() {
    let mut rng = SmallRng::seed_from_u64(3);
    // Widths with and without a tail past the SIMD paths' 32 values, rows further apart than that.
    for (n, stride) in [(256, 256), (256, 1024), (40, 64), (7, 7)] {
        let rows_n = 300;
        let rows = random_activations(&mut rng, rows_n * stride);
        let weights: Vec<f32> = (0..rows_n).map(|_| rng.random_range(0.0f32..0.01)).collect();
        let reference = weighted(KernelPath::SCALAR, &weights, &rows, stride, n);
        for path in KernelPath::available() {
            let got = weighted(path, &weights, &rows, stride, n);
            for (d, (g, r)) in got.iter().zip(&reference).enumerate() {
                // Σ|w·v| bounds the error of each order of rounding.
                let magnitude: f32 = weights
                    .iter()
                    .enumerate()
                    .map(|(j, w)| (w * rows[j * stride + d]).abs())
                    .sum();
                assert!(
                    (g - r).abs() <= 1e-5 * magnitude,
                    "{path}, {n} of {stride}, value {d}: {g} vs scalar {r}"
                );
            }
        }
    }
}

#[test]
fn zero_weights_around_a_span_change_no_weighted_sum() {
    // Attention's weights are 0 outside a token's view; a batched sequence sums over more
    // positions than a lone one and must get the same bits.
    let mut rng = SmallRng::seed_from_u64(4);
    let (n, stride, span) = (256, 256, 37..190);
    let rows = random_activations(&mut rng, 220 * stride);
    let mut weights: Vec<f32> = (0..220).map(|_| rng.random_range(0.0f32..0.01)).collect();
    weights[..span.start].fill(0.0);
    weights[span.end..].fill(0.0);
    for path in KernelPath::available() {
        let alone = weighted(path, &weights[span.clone()], &rows[span.start * stride..], stride, n);
        let padded = weighted(path, &weights, &rows, stride, n);
        assert_eq!(
            alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            padded.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{path}"
        );
    }
}

#[test]
fn weighted_sum_refuses_rows_that_do_not_fit() {
    let mut out = vec![0.0; 8];
    assert!(
        weighted_sum(KernelPath::SCALAR, &[1.0; 3], &[0.0; 23], 8, &mut out).is_err(),
        "3 rows of 8 need 24 values"
    );
    assert!(
        weighted_sum(KernelPath::SCALAR, &[1.0; 2], &[0.0; 64], 4, &mut out).is_err(),
        "rows of 8 values 4 apart overlap"
    );
    assert!(weighted_sum(KernelPath::best(), &[1.0; 3], &[0.0; 24], 8, &mut out).is_ok());
}
