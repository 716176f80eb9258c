//! The tiled matmul: bands of weight rows against tiles of tokens, so each weight block is
//! unpacked once for every token of a tile and both stay in L1 while they meet.

use super::table::{signed_parts, BandFn, Kernels, Quantize};
use super::{blocks, KernelError, KernelPath};
use crate::quants::*;
use std::ops::Range;

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

pub(super) fn matmul_typed<B: Kernels>(
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
