//! Keys and values of every past position, per layer, in f16 (as llama.cpp keeps them).

use half::f16;
use half::slice::HalfFloatSliceExt;
use std::ops::Range;

pub struct KvCache {
    /// Per layer: (capacity, kv_dim) keys, then values.
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
    kv_dim: usize,
    capacity: usize,
    /// Positions filled.
    len: usize,
}

impl KvCache {
    /// Room for `capacity` positions; fails (instead of aborting) when memory runs out.
    pub fn new(n_layers: usize, kv_dim: usize, capacity: usize) -> Result<KvCache, std::collections::TryReserveError> {
        let layer = || -> Result<Vec<f16>, std::collections::TryReserveError> {
            let mut v = Vec::new();
            v.try_reserve_exact(capacity * kv_dim)?;
            v.resize(capacity * kv_dim, f16::ZERO);
            Ok(v)
        };
        let k = (0..n_layers).map(|_| layer()).collect::<Result<_, _>>()?;
        let v = (0..n_layers).map(|_| layer()).collect::<Result<_, _>>()?;
        Ok(KvCache { k, v, kv_dim, capacity, len: 0 })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Marks `n` more positions filled (after every layer has written them).
    pub fn advance(&mut self, n: usize) {
        self.len += n;
        debug_assert!(self.len <= self.capacity);
    }

    /// Stores key and value rows for position `pos` of layer `l`.
    pub fn store(&mut self, l: usize, pos: usize, k: &[f32], v: &[f32]) {
        let at = pos * self.kv_dim;
        for (dst, src) in self.k[l][at..at + self.kv_dim].iter_mut().zip(k) {
            *dst = f16::from_f32(*src);
        }
        for (dst, src) in self.v[l][at..at + self.kv_dim].iter_mut().zip(v) {
            *dst = f16::from_f32(*src);
        }
    }

    /// Keys of positions `positions` of layer `l`, as f32: (positions, kv_dim) into `out`.
    /// Attention converts them once per layer and step, not once per head and query.
    pub fn keys_f32(&self, l: usize, positions: Range<usize>, out: &mut [f32]) {
        self.k[l][positions.start * self.kv_dim..positions.end * self.kv_dim].convert_to_f32_slice(out);
    }

    /// Values, as [`KvCache::keys_f32`] gives keys.
    pub fn values_f32(&self, l: usize, positions: Range<usize>, out: &mut [f32]) {
        self.v[l][positions.start * self.kv_dim..positions.end * self.kv_dim].convert_to_f32_slice(out);
    }
}
