//! The one dispatch point: from a [`QuantType`] and raw bytes to the typed block code, and from
//! a [`KernelPath`] to the scalar, simd128, AVX2 or AVX-512 VNNI version of each dot product.

use crate::quants::*;
use crate::QuantType;
use half::{bf16, f16};
use std::fmt;
use std::ops::Range;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("{ty} has no {what}")]
    Unsupported { ty: QuantType, what: &'static str },
    #[error("{ty} data: {len} bytes is not a whole number of {size}-byte blocks")]
    Length { ty: QuantType, len: usize, size: usize },
    #[error("{ty} data is not aligned to {align} bytes")]
    Alignment { ty: QuantType, align: usize },
    #[error("shape mismatch: {0}")]
    Shape(String),
}

/// A set of kernels the running machine can execute.
///
/// Only [`KernelPath::best`] and [`KernelPath::available`] make one, so holding an AVX2 path
/// proves the CPU has AVX2, FMA and F16C, and an AVX-512 VNNI path that it also has
/// AVX-512F/VL/BW and VNNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelPath(Path);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Scalar,
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl KernelPath {
    pub const SCALAR: KernelPath = KernelPath(Path::Scalar);

    /// Every path this machine runs, scalar first.
    pub fn available() -> Vec<KernelPath> {
        let mut paths = vec![Self::SCALAR];
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        paths.push(KernelPath(Path::Simd128));
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            paths.push(KernelPath(Path::Avx2));
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
            {
                paths.push(KernelPath(Path::Avx512Vnni));
            }
        }
        paths
    }

    /// The fastest path this machine runs.
    pub fn best() -> KernelPath {
        *Self::available().last().expect("scalar is always available")
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            Path::Scalar => "scalar",
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Path::Simd128 => "simd128",
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Path::Avx512Vnni => "avx512vnni",
        }
    }
}

impl fmt::Display for KernelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Activation rows a tiled kernel takes at once: prompt tokens against one weight row. Eight in
/// wasm, where each weight block's unpacking (scalar table lookups, f16 scales converted with
/// integer arithmetic) costs more and is shared by more tokens (matmul ×8 in wasmtime: Q5_0
/// +19%, Q4_K +25% over four); four on x86, where eight spilled registers (Q5_0 −9%).
#[cfg(target_arch = "wasm32")]
const TILE: usize = 8;
#[cfg(not(target_arch = "wasm32"))]
const TILE: usize = 4;
/// Weight rows a matmul takes against each tile of tokens before moving on.
const ROW_BAND: usize = 16;

/// Dot products of each row of a band (whole rows of `blocks_per_row` blocks) with `N`
/// activation rows: `out[r][i]` for row `r` and activation row `i`. Whatever `N`, a weight row
/// and an activation row give bit for bit the same sum.
type BandFn<B, const N: usize> = for<'a> fn(&[B], usize, [ScaledRow<'a, <B as WeightBlock>::Act>; N], &mut [[f32; N]]);

/// A weight format's band of dot products on each path. The loop over rows runs inside the
/// path's kernel, so each row's dot product is inlined into it, not called.
trait Kernels: WeightBlock<Act: Quantize> {
    fn band_fn<const N: usize>(path: KernelPath) -> BandFn<Self, N>;
}

/// An activation format's quantiser on each path (the scalar `from_float` unless a path has its
/// own, bit for bit the same).
trait Quantize: ActivationBlock {
    fn quantize_fn(_path: KernelPath) -> fn(&[f32], &mut [Self]) {
        Self::from_float
    }
}

impl Quantize for f32 {}
impl Quantize for f16 {}
impl Quantize for bf16 {}
impl Quantize for BlockQ8_1 {}
impl Quantize for BlockQ8K {}

impl Quantize for BlockQ8_0 {
    fn quantize_fn(path: KernelPath) -> fn(&[f32], &mut [Self]) {
        match path.0 {
            // SAFETY: both x86 paths vouch for AVX2, FMA and F16C.
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 | Path::Avx512Vnni => |x, out| unsafe { crate::avx2::quantize_q8_0(x, out) },
            _ => Self::from_float,
        }
    }
}

/// `out[r] = dot(row r)` for each row of `band`.
#[inline(always)]
fn each_row<B, R>(band: &[B], blocks_per_row: usize, out: &mut [R], dot: impl Fn(&[B]) -> R) {
    for (row, o) in band.chunks_exact(blocks_per_row).zip(out) {
        *o = dot(row);
    }
}

/// The kernel table: weight block => name of its function in `simd128.rs` and `avx2.rs`, and
/// how it takes activations: `scaled` functions take `N` activation rows with their f32 block
/// scales, `tiled` ones `N` rows of blocks alone (in `simd128.rs`; the AVX2 k-quants take
/// `ScaledRow`s and use only their blocks); both unpack each weight block once for all `N`.
/// `one` functions take one row and are called once per row.
macro_rules! kernel_table {
    ($($block:ty => $name:ident $mode:ident),* $(,)?) => {$(
        impl Kernels for $block {
            fn band_fn<const N: usize>(path: KernelPath) -> BandFn<Self, N> {
                match path.0 {
                    Path::Scalar => |band, n, ys, out| each_row(band, n, out, |x| ys.map(|y| <$block as WeightBlock>::vec_dot(x, y.blocks))),
                    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                    Path::Simd128 => |band, n, ys, out| each_row(band, n, out, |x| kernel_table!(@simd128 $name $mode, x, ys)),
                    // SAFETY: an Avx2 path exists only when the CPU has AVX2, FMA and F16C, an
                    // Avx512Vnni path only when it also has AVX-512F/VL/BW and VNNI.
                    #[cfg(target_arch = "x86_64")]
                    Path::Avx2 => |band, n, ys, out| unsafe { crate::avx2::band_avx2(band, n, ys, out) },
                    #[cfg(target_arch = "x86_64")]
                    Path::Avx512Vnni => |band, n, ys, out| unsafe { crate::avx512vnni::band_vnni(band, n, ys, out) },
                }
            }
        }

        #[cfg(target_arch = "x86_64")]
        impl crate::avx2::Avx2Dot for $block {
            #[inline(always)]
            unsafe fn dot<D: crate::avx2::IntDots, const N: usize>(x: &[Self], ys: [ScaledRow<Self::Act>; N]) -> [f32; N] {
                kernel_table!(@avx2 $name $mode, x, ys)
            }
        }
    )*};
    (@simd128 $name:ident one, $x:ident, $ys:ident) => { $ys.map(|y| crate::simd128::$name($x, y.blocks)) };
    (@simd128 $name:ident tiled, $x:ident, $ys:ident) => { crate::simd128::$name($x, $ys.map(|y| y.blocks)) };
    (@simd128 $name:ident scaled, $x:ident, $ys:ident) => { crate::simd128::$name($x, $ys) };
    (@avx2 $name:ident one, $x:ident, $ys:ident) => { crate::avx2::array(0.0, #[inline(always)] |n| crate::avx2::$name($x, $ys[n].blocks)) };
    (@avx2 $name:ident $mode:ident, $x:ident, $ys:ident) => { crate::avx2::$name::<D, N>($x, $ys) };
}

kernel_table! {
    f32 => vec_dot_f32 one,
    f16 => vec_dot_f16 one,
    bf16 => vec_dot_bf16 one,
    BlockQ4_0 => vec_dot_q4_0 scaled,
    BlockQ4_1 => vec_dot_q4_1 scaled,
    BlockQ5_0 => vec_dot_q5_0 scaled,
    BlockQ5_1 => vec_dot_q5_1 scaled,
    BlockQ8_0 => vec_dot_q8_0 scaled,
    BlockQ2K => vec_dot_q2_k tiled,
    BlockQ3K => vec_dot_q3_k tiled,
    BlockQ4K => vec_dot_q4_k tiled,
    BlockQ5K => vec_dot_q5_k tiled,
    BlockQ6K => vec_dot_q6_k tiled,
}

/// Views `bytes` as blocks of `B`.
fn blocks<B: Block>(bytes: &[u8]) -> Result<&[B], KernelError> {
    let size = std::mem::size_of::<B>();
    if !bytes.len().is_multiple_of(size) {
        return Err(KernelError::Length {
            ty: B::TYPE,
            len: bytes.len(),
            size,
        });
    }
    bytemuck::try_cast_slice(bytes).map_err(|_| KernelError::Alignment {
        ty: B::TYPE,
        align: std::mem::align_of::<B>(),
    })
}

fn blocks_mut<B: Block>(bytes: &mut [u8]) -> Result<&mut [B], KernelError> {
    let size = std::mem::size_of::<B>();
    if !bytes.len().is_multiple_of(size) {
        return Err(KernelError::Length {
            ty: B::TYPE,
            len: bytes.len(),
            size,
        });
    }
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| KernelError::Alignment {
        ty: B::TYPE,
        align: std::mem::align_of::<B>(),
    })
}

/// Calls `$f::<Block>` for the block type of `$ty`; `$other` handles the types `$f` does not take.
macro_rules! with_block {
    ($ty:expr, $f:ident, [$($variant:ident => $block:ty),*], $args:tt, $other:expr) => {
        match $ty {
            $(QuantType::$variant => $f::<$block> $args,)*
            #[allow(unreachable_patterns)]
            _ => $other,
        }
    };
}

fn dequantize_typed<B: Block>(data: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    let blocks = blocks::<B>(data)?;
    if out.len() != blocks.len() * B::BLOCK_SIZE {
        return Err(KernelError::Shape(format!(
            "{} blocks of {} need {} outputs, got {}",
            blocks.len(),
            B::TYPE,
            blocks.len() * B::BLOCK_SIZE,
            out.len()
        )));
    }
    B::to_float(blocks, out);
    Ok(())
}

/// Dequantises `data` (whole blocks of `ty`) into `out`.
pub fn dequantize(ty: QuantType, data: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    with_block!(ty, dequantize_typed, [
        F32 => f32, F16 => f16, BF16 => bf16, Q4_0 => BlockQ4_0, Q4_1 => BlockQ4_1, Q5_0 => BlockQ5_0,
        Q5_1 => BlockQ5_1, Q8_0 => BlockQ8_0, Q8_1 => BlockQ8_1, Q2K => BlockQ2K, Q3K => BlockQ3K,
        Q4K => BlockQ4K, Q5K => BlockQ5K, Q6K => BlockQ6K, Q8K => BlockQ8K
    ], (data, out), unreachable!("every QuantType dequantises"))
}

fn quantize_typed<B: ActivationBlock>(x: &[f32], out: &mut [u8]) -> Result<(), KernelError> {
    let blocks = blocks_mut::<B>(out)?;
    if x.len() != blocks.len() * B::BLOCK_SIZE {
        return Err(KernelError::Shape(format!(
            "{} values do not fill {} blocks of {}",
            x.len(),
            blocks.len(),
            B::TYPE
        )));
    }
    B::from_float(x, blocks);
    Ok(())
}

/// Quantises `x` into `out` in activation format `ty` (F32, F16, BF16, Q8_0, Q8_1 or Q8_K).
pub fn quantize_activations(ty: QuantType, x: &[f32], out: &mut [u8]) -> Result<(), KernelError> {
    with_block!(ty, quantize_typed, [
        F32 => f32, F16 => f16, BF16 => bf16, Q8_0 => BlockQ8_0, Q8_1 => BlockQ8_1, Q8K => BlockQ8K
    ], (x, out), Err(KernelError::Unsupported { ty, what: "activation quantiser" }))
}

fn vec_dot_typed<B: Kernels>(path: KernelPath, w: &[u8], a: &[u8]) -> Result<f32, KernelError> {
    let (w, a) = (blocks::<B>(w)?, blocks::<B::Act>(a)?);
    if w.len() * B::BLOCK_SIZE != a.len() * B::Act::BLOCK_SIZE {
        return Err(KernelError::Shape(format!(
            "{} weights against {} activations",
            w.len() * B::BLOCK_SIZE,
            a.len() * B::Act::BLOCK_SIZE
        )));
    }
    let (scales, parts) = (B::Act::scales(a), signed_parts::<B>(path, a));
    let mut out = [[0.0]];
    B::band_fn::<1>(path)(
        w,
        w.len(),
        [ScaledRow {
            blocks: a,
            scales: &scales,
            parts: &parts,
        }],
        &mut out,
    );
    Ok(out[0][0])
}

/// Dot product of a weight row `w` (format `ty`) with an activation row `a`, already quantised
/// to `ty.vec_dot_type()`.
pub fn vec_dot(path: KernelPath, ty: QuantType, w: &[u8], a: &[u8]) -> Result<f32, KernelError> {
    with_block!(ty, vec_dot_typed, [
        F32 => f32, F16 => f16, BF16 => bf16, Q4_0 => BlockQ4_0, Q4_1 => BlockQ4_1, Q5_0 => BlockQ5_0,
        Q5_1 => BlockQ5_1, Q8_0 => BlockQ8_0, Q2K => BlockQ2K, Q3K => BlockQ3K, Q4K => BlockQ4K,
        Q5K => BlockQ5K, Q6K => BlockQ6K
    ], (path, w, a), Err(KernelError::Unsupported { ty, what: "vec_dot (it is an activation format)" }))
}

/// `out = Σ_j weights[j] · rows[j·stride..][..out.len()]` on `path`, each value summed in order
/// of `j` (see [`crate::quants::weighted_sum`]): attention's weighted sum of value rows.
pub fn weighted_sum(
    path: KernelPath,
    weights: &[f32],
    rows: &[f32],
    stride: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let needed = weights.len().checked_sub(1).map_or(0, |last| last * stride + out.len());
    if out.len() > stride || rows.len() < needed {
        return Err(KernelError::Shape(format!(
            "{} rows of {} values {stride} apart need {needed} values, got {}",
            weights.len(),
            out.len(),
            rows.len()
        )));
    }
    match path.0 {
        Path::Scalar => crate::quants::weighted_sum(weights, rows, stride, out),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Path::Simd128 => crate::simd128::weighted_sum(weights, rows, stride, out),
        // SAFETY: both x86 paths vouch for AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 | Path::Avx512Vnni => unsafe { crate::avx2::weighted_sum(weights, rows, stride, out) },
    }
    Ok(())
}

/// The activations' [`SignedParts`] where `path`'s kernels for weights `B` take them (once per
/// matmul, not once per weight row), else none. Q8_0 is the one format with signed weights.
fn signed_parts<B: WeightBlock>(path: KernelPath, acts: &[B::Act]) -> Vec<SignedParts> {
    let path_takes_them = match path.0 {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Path::Simd128 => crate::simd128::TAKES_SIGNED_PARTS,
        _ => false,
    };
    if B::TYPE == QuantType::Q8_0 && path_takes_them {
        B::Act::signed_parts(acts)
    } else {
        Vec::new()
    }
}

fn matmul_typed<B: Kernels>(
    path: KernelPath,
    w: &[u8],
    x: &[f32],
    k: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let w = blocks::<B>(w)?;
    let blocks_per_row = k / B::BLOCK_SIZE;
    if k == 0
        || !k.is_multiple_of(B::BLOCK_SIZE)
        || !k.is_multiple_of(B::Act::BLOCK_SIZE)
        || w.len() % blocks_per_row != 0
        || !x.len().is_multiple_of(k)
    {
        return Err(KernelError::Shape(format!(
            "{} weights ({} values) and {} activations do not split into rows of {k}",
            B::TYPE,
            w.len() * B::BLOCK_SIZE,
            x.len()
        )));
    }
    let (n_rows, n_tokens) = (w.len() / blocks_per_row, x.len() / k);
    if out.len() != n_rows * n_tokens {
        return Err(KernelError::Shape(format!(
            "output holds {} values, need {n_tokens}×{n_rows}",
            out.len()
        )));
    }
    // Each activation row is quantised once and reused against every weight row.
    let act_blocks = k / B::Act::BLOCK_SIZE;
    let mut acts = vec![<B::Act as bytemuck::Zeroable>::zeroed(); n_tokens * act_blocks]; // (n_tokens, k) in the activation format
    let quantize = B::Act::quantize_fn(path);
    for (row, q) in x.chunks_exact(k).zip(acts.chunks_exact_mut(act_blocks)) {
        quantize(row, q);
    }
    let (scales, parts) = (B::Act::scales(&acts), signed_parts::<B>(path, &acts));
    let act_row = |t: usize| {
        let blocks = t * act_blocks..(t + 1) * act_blocks;
        ScaledRow {
            blocks: &acts[blocks.clone()],
            scales: scales.get(blocks.clone()).unwrap_or_default(),
            parts: parts.get(blocks).unwrap_or_default(),
        }
    };
    let (dots_1, dots_2, dots_4, dots_tile) = (
        B::band_fn::<1>(path),
        B::band_fn::<2>(path),
        B::band_fn::<4>(path),
        B::band_fn::<TILE>(path),
    );
    // Whole tiles, then what is left (a batch of 2 to 7 decode steps, a prompt's tail) in at most
    // one tile of 4 and one of 2, so that it still shares each weight block's unpacking.
    let tiled = n_tokens / TILE * TILE;
    let fours = tiled + (n_tokens - tiled) / 4 * 4;
    let twos = fours + (n_tokens - fours) / 2 * 2;
    // A band of rows against one tile of tokens at a time: both stay in L1 while they meet.
    for (band, w_band) in w.chunks(ROW_BAND * blocks_per_row).enumerate() {
        let rows = band * ROW_BAND..band * ROW_BAND + w_band.len() / blocks_per_row;
        macro_rules! tiles {
            ($dots:expr, $n:expr, $tokens:expr) => {
                for t0 in $tokens.step_by($n) {
                    let ys = std::array::from_fn(|i| act_row(t0 + i));
                    band_tile(
                        $dots,
                        w_band,
                        blocks_per_row,
                        ys,
                        rows.clone(),
                        &mut out[t0 * n_rows..(t0 + $n) * n_rows],
                    );
                }
            };
        }
        tiles!(dots_tile, TILE, 0..tiled);
        tiles!(dots_4, 4, tiled..fours);
        tiles!(dots_2, 2, fours..twos);
        // Tokens left over (decode's one): the rows' sums go straight to the output.
        for t in twos..n_tokens {
            dots_1(
                w_band,
                blocks_per_row,
                [act_row(t)],
                bytemuck::cast_slice_mut(&mut out[t * n_rows..][rows.clone()]),
            );
        }
    }
    Ok(())
}

/// One band of weight rows (`rows` of the output) against `N` tokens, through the band's
/// `N`-token kernel; `out` is (N, rows of the whole matrix), the tokens' output rows.
fn band_tile<B: Kernels, const N: usize>(
    band_fn: BandFn<B, N>,
    w_band: &[B],
    blocks_per_row: usize,
    ys: [ScaledRow<B::Act>; N],
    rows: Range<usize>,
    out: &mut [f32],
) {
    let n_rows = out.len() / N;
    let mut sums = [[0.0; N]; ROW_BAND]; // (rows of the band, tokens of the tile)
    let sums = &mut sums[..rows.len()];
    band_fn(w_band, blocks_per_row, ys, sums);
    for (r, row_sums) in rows.zip(sums.iter()) {
        for (i, &v) in row_sums.iter().enumerate() {
            out[i * n_rows + r] = v;
        }
    }
}

/// `out = x · wᵀ`: `w` is (n_rows, k) in format `ty`, `x` is (n_tokens, k) f32,
/// `out` is (n_tokens, n_rows).
pub fn matmul(
    path: KernelPath,
    ty: QuantType,
    w: &[u8],
    x: &[f32],
    k: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    with_block!(ty, matmul_typed, [
        F32 => f32, F16 => f16, BF16 => bf16, Q4_0 => BlockQ4_0, Q4_1 => BlockQ4_1, Q5_0 => BlockQ5_0,
        Q5_1 => BlockQ5_1, Q8_0 => BlockQ8_0, Q2K => BlockQ2K, Q3K => BlockQ3K, Q4K => BlockQ4K,
        Q5K => BlockQ5K, Q6K => BlockQ6K
    ], (path, w, x, k, out), Err(KernelError::Unsupported { ty, what: "matmul (it is an activation format)" }))
}
