//! Keys and values of past positions, per layer, in blocks of [`BLOCK`] positions.
//!
//! A block holds its positions' keys and values for every layer, in two parts: the global
//! layers' and the sliding-window layers'. Parts are reference counted, so that sequences
//! sharing a prompt prefix share its full blocks (see `prefix_cache.rs`), and a sequence lets
//! go of a block's sliding-window part once the block has slid out of the window: those layers
//! hold at most `window + 2·BLOCK` positions, however long the context grows. Blocks are
//! allocated as positions fill, not for the whole context up front.
//!
//! Rows are stored in f16 (as llama.cpp keeps them) or, optionally, in Q8_0 (half the memory,
//! at the cost of some drift from llama.cpp's outputs; see the README).
//!
//! A part's bytes are in memory here (the CPU), or in a slot of a device's pool ([`KvSlots`]:
//! the GPU keeps the cache on the card, and its attention reads the slots of each block).

use rill_kernels::{dequantize, quantize_activations, QuantType};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Positions per block: the unit of allocation, of sharing between sequences and of sliding.
pub const BLOCK: usize = 32;

/// How keys and values are stored (named `f16` and `q8_0` in settings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvType {
    #[default]
    F16,
    Q8_0,
}

impl std::str::FromStr for KvType {
    type Err = String;
    fn from_str(s: &str) -> Result<KvType, String> {
        match s {
            "f16" => Ok(KvType::F16),
            "q8_0" => Ok(KvType::Q8_0),
            _ => Err(format!("{s:?} is not a KV cache type: f16 or q8_0")),
        }
    }
}

impl KvType {
    pub fn quant_type(self) -> QuantType {
        match self {
            KvType::F16 => QuantType::F16,
            KvType::Q8_0 => QuantType::Q8_0,
        }
    }

    /// Bytes of one row of `kv_dim` values, or `None` when the format cannot hold such a row.
    pub fn row_bytes(self, kv_dim: usize) -> Option<usize> {
        self.quant_type().row_bytes(kv_dim)
    }
}

/// KV memory of one model: what its blocks hold, and the most they may hold.
#[derive(Debug)]
pub struct KvMemory {
    used: AtomicUsize,
    budget: AtomicUsize,
}

impl Default for KvMemory {
    fn default() -> Self {
        KvMemory {
            used: AtomicUsize::new(0),
            budget: AtomicUsize::new(usize::MAX),
        }
    }
}

impl KvMemory {
    /// Bytes of KV blocks alive (in sequences or in the prefix cache).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn budget(&self) -> usize {
        self.budget.load(Ordering::Relaxed)
    }

    /// Blocks beyond `bytes` in all are not allocated (reserving them fails).
    pub fn set_budget(&self, bytes: usize) {
        self.budget.store(bytes, Ordering::Relaxed);
    }

    /// Counts `bytes` more, if they fit the budget.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&u| u <= self.budget())
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// The KV cache did not get a block: the budget is spent, or memory is.
#[derive(Debug, thiserror::Error)]
#[error("no memory for a KV block of {0} bytes")]
pub struct NoKvMemory(pub usize);

/// A device's pools of part slots (one pool for global parts, one for sliding ones): a slot
/// holds a part's bytes in the same layout as in memory.
pub trait KvSlots: Send + Sync + std::fmt::Debug {
    /// A free slot of the global (or sliding) pool, if any is left.
    fn take(&self, global: bool) -> Option<u32>;
    fn give_back(&self, global: bool, slot: u32);
}

/// Where each layer's rows live in a block, shared by every cache of one model and type.
#[derive(Debug)]
pub struct KvLayout {
    pub ty: KvType,
    pub kv_dim: usize,
    row_bytes: usize,
    /// Per layer: whether it slides, and its index among the layers of its part.
    layers: Vec<(bool, usize)>,
    n_global: usize,
    n_local: usize,
    /// Positions a sliding-window layer sees, itself included.
    window: usize,
    pub memory: Arc<KvMemory>,
    /// The device pools the parts live in; `None`: in memory.
    slots: Option<Arc<dyn KvSlots>>,
}

impl KvLayout {
    /// `sliding[l]`: whether layer `l` sees only the last `window` positions. Blocks count
    /// their bytes against `memory`.
    pub fn new(ty: KvType, kv_dim: usize, sliding: &[bool], window: usize, memory: Arc<KvMemory>) -> Option<KvLayout> {
        let row_bytes = ty.row_bytes(kv_dim)?;
        let (mut n_global, mut n_local) = (0, 0);
        let layers = sliding
            .iter()
            .map(|&s| {
                let count = if s { &mut n_local } else { &mut n_global };
                *count += 1;
                (s, *count - 1)
            })
            .collect();
        Some(KvLayout {
            ty,
            kv_dim,
            row_bytes,
            layers,
            n_global,
            n_local,
            window,
            memory,
            slots: None,
        })
    }

    /// The same layout with its parts in `slots` on a device.
    pub fn on_device(&self, slots: Arc<dyn KvSlots>) -> KvLayout {
        KvLayout {
            layers: self.layers.clone(),
            memory: self.memory.clone(),
            slots: Some(slots),
            ..*self
        }
    }

    /// Per layer: whether it slides, and its index among the layers of its part.
    pub fn layer(&self, l: usize) -> (bool, usize) {
        self.layers[l]
    }

    /// Layers in a block's (global, sliding) part.
    pub fn part_layers(&self) -> (usize, usize) {
        (self.n_global, self.n_local)
    }

    /// Bytes of one block's part holding `n_layers` layers: keys and values.
    fn part_bytes(&self, n_layers: usize) -> usize {
        2 * n_layers * BLOCK * self.row_bytes
    }

    /// Bytes of a block's two parts: (global layers', sliding-window layers').
    pub fn block_bytes(&self) -> (usize, usize) {
        (self.part_bytes(self.n_global), self.part_bytes(self.n_local))
    }

    /// The first position a token at position `p` sees in layer `l`.
    pub fn first_visible(&self, l: usize, p: usize) -> usize {
        if self.layers[l].0 {
            (p + 1).saturating_sub(self.window)
        } else {
            0
        }
    }

    /// The first position the sliding-window layers see from position `p`; `None` when no
    /// layer slides.
    pub fn window_start(&self, p: usize) -> Option<usize> {
        (self.n_local > 0).then(|| (p + 1).saturating_sub(self.window))
    }
}

/// One part of one block: keys (layer in part, position in block, row), then values.
/// Counted in its model's [`KvMemory`] while it lives.
pub struct Part {
    bytes: usize,
    data: PartData,
    memory: Arc<KvMemory>,
}

enum PartData {
    /// In memory, as u16 so that f16 and Q8_0 rows are aligned for the kernels.
    Host { k: Vec<u16>, v: Vec<u16> },
    /// Slot `slot` of a device's global or sliding pool.
    Device {
        slots: Arc<dyn KvSlots>,
        global: bool,
        slot: u32,
    },
}

impl Part {
    fn new(bytes: usize, global: bool, layout: &KvLayout) -> Result<Part, NoKvMemory> {
        let memory = &layout.memory;
        if !memory.take(bytes) {
            return Err(NoKvMemory(bytes));
        }
        if let Some(slots) = &layout.slots {
            let Some(slot) = slots.take(global) else {
                memory.give_back(bytes);
                return Err(NoKvMemory(bytes));
            };
            return Ok(Part {
                bytes,
                data: PartData::Device {
                    slots: slots.clone(),
                    global,
                    slot,
                },
                memory: memory.clone(),
            });
        }
        let zeroed = || -> Option<Vec<u16>> {
            let mut v = Vec::new();
            v.try_reserve_exact(bytes / 4).ok()?;
            v.resize(bytes / 4, 0);
            Some(v)
        };
        match (zeroed(), zeroed()) {
            (Some(k), Some(v)) => Ok(Part {
                bytes,
                data: PartData::Host { k, v },
                memory: memory.clone(),
            }),
            _ => {
                memory.give_back(bytes);
                Err(NoKvMemory(bytes))
            }
        }
    }

    fn bytes(&self) -> usize {
        self.bytes
    }

    /// Its slot, for a part on a device.
    pub fn slot(&self) -> Option<u32> {
        match self.data {
            PartData::Device { slot, .. } => Some(slot),
            PartData::Host { .. } => None,
        }
    }

    /// Keys (or values) in memory; a cache on a device is read by the device's attention.
    fn rows(&self, values: bool) -> &Vec<u16> {
        match &self.data {
            PartData::Host { k, v } => {
                if values {
                    v
                } else {
                    k
                }
            }
            PartData::Device { .. } => panic!("the CPU read a KV part that lives on a device"),
        }
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if let PartData::Device { slots, global, slot } = &self.data {
            slots.give_back(*global, *slot);
        }
        self.memory.give_back(self.bytes);
    }
}

/// A block of a sequence's cache: the global layers' part, and the sliding layers' part until
/// the block has slid out of their window (or always `None` when no layer slides).
#[derive(Clone)]
pub struct Block {
    pub global: Arc<Part>,
    pub local: Option<Arc<Part>>,
}

impl Block {
    fn new(layout: &KvLayout) -> Result<Block, NoKvMemory> {
        let part = |n_layers, global| Part::new(layout.part_bytes(n_layers), global, layout).map(Arc::new);
        let local = if layout.n_local > 0 {
            Some(part(layout.n_local, false)?)
        } else {
            None
        };
        Ok(Block {
            global: part(layout.n_global, true)?,
            local,
        })
    }

    /// Bytes this block holds.
    pub fn bytes(&self) -> usize {
        self.global.bytes() + self.local.as_ref().map_or(0, |p| p.bytes())
    }
}

pub struct KvCache {
    layout: Arc<KvLayout>,
    blocks: Vec<Block>,
    capacity: usize,
    /// Positions filled.
    len: usize,
}

impl KvCache {
    /// An empty cache for up to `capacity` positions.
    pub fn new(layout: Arc<KvLayout>, capacity: usize) -> KvCache {
        KvCache {
            layout,
            blocks: Vec::new(),
            capacity,
            len: 0,
        }
    }

    /// A cache that starts with `blocks` (a shared prefix, whole blocks) already filled.
    pub fn with_prefix(layout: Arc<KvLayout>, capacity: usize, blocks: Vec<Block>) -> KvCache {
        let len = blocks.len() * BLOCK;
        let mut cache = KvCache {
            layout,
            blocks,
            capacity,
            len,
        };
        cache.slide();
        cache
    }

    pub fn layout(&self) -> &Arc<KvLayout> {
        &self.layout
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

    /// Bytes of KV this sequence holds, blocks it shares included: (global layers',
    /// sliding-window layers').
    pub fn bytes(&self) -> (usize, usize) {
        let global = self.blocks.iter().map(|b| b.global.bytes()).sum();
        (
            global,
            self.blocks
                .iter()
                .filter_map(|b| b.local.as_ref())
                .map(|p| p.bytes())
                .sum(),
        )
    }

    /// The full blocks, `i`-th holding positions `i·BLOCK..(i+1)·BLOCK` (to share them).
    pub fn full_blocks(&self) -> &[Block] {
        &self.blocks[..self.len / BLOCK]
    }

    /// Makes room for positions up to `end`: the blocks they fall in, allocated now so that
    /// running out of memory is an error before any work, not an abort during it.
    /// All or nothing: when one block cannot be had, those just added are let go again.
    pub fn reserve(&mut self, end: usize) -> Result<(), NoKvMemory> {
        let before = self.blocks.len();
        while self.blocks.len() * BLOCK < end {
            let added = Block::new(&self.layout).and_then(|block| {
                self.blocks.try_reserve(1).map_err(|_| NoKvMemory(block.bytes()))?;
                self.blocks.push(block);
                Ok(())
            });
            if let Err(e) = added {
                self.blocks.truncate(before);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Each block's device slots: (global part's, sliding part's or `u32::MAX` once it slid out).
    pub fn slots(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.blocks.iter().map(|b| {
            let slot = |p: &Part| p.slot().expect("a cache on a device");
            (slot(&b.global), b.local.as_deref().map_or(u32::MAX, slot))
        })
    }

    /// Whether any block is held.
    pub fn holds_blocks(&self) -> bool {
        !self.blocks.is_empty()
    }

    /// Lets go of every block (what a preempted sequence does; it recomputes them later).
    pub fn clear(&mut self) {
        self.blocks = Vec::new();
        self.len = 0;
    }

    /// Marks `n` more positions filled (after every layer has written them), and lets go of
    /// the sliding-window parts no later position will see.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
        debug_assert!(self.len <= self.capacity);
        self.slide();
    }

    /// Drops the sliding part of every block wholly before what the next token sees.
    fn slide(&mut self) {
        let Some(start) = self.layout.window_start(self.len) else {
            return;
        };
        for block in &mut self.blocks[..start / BLOCK] {
            block.local = None;
        }
    }

    /// The bytes of layer `l`'s key and value rows in block `b`, as (part, offset of row 0).
    fn rows(&self, l: usize, b: usize) -> (&Part, usize) {
        let (sliding, index) = self.layout.layers[l];
        let block = &self.blocks[b];
        let part = if sliding {
            block
                .local
                .as_deref()
                .expect("a sliding part that is still in the window")
        } else {
            &block.global
        };
        (part, index * BLOCK * self.layout.row_bytes)
    }

    /// Stores key and value rows for position `pos` of layer `l` (a position [`reserve`]d).
    ///
    /// [`reserve`]: KvCache::reserve
    pub fn store(&mut self, l: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (sliding, index) = self.layout.layers[l];
        let (ty, row_bytes) = (self.layout.ty.quant_type(), self.layout.row_bytes);
        let block = &mut self.blocks[pos / BLOCK];
        let part = if sliding {
            block
                .local
                .as_mut()
                .expect("a sliding part that is still in the window")
        } else {
            &mut block.global
        };
        // Positions past `len` are in blocks no other sequence shares (only full blocks are shared).
        let part = Arc::get_mut(part).expect("the block being filled is this sequence's own");
        let at = (index * BLOCK + pos % BLOCK) * row_bytes;
        let PartData::Host { k: keys, v: values } = &mut part.data else {
            panic!("the CPU wrote a KV part that lives on a device");
        };
        for (rows, src) in [(keys, k), (values, v)] {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(rows);
            quantize_activations(ty, src, &mut bytes[at..at + row_bytes])
                .expect("rows of kv_dim values fit the layout");
        }
    }

    /// Keys of positions `positions` of layer `l`, as f32, one KV head after another:
    /// (n_kv_heads, positions, head_dim) into `out`, so that each head's keys are the rows of
    /// one matrix for attention's scores. Converted once per layer and step, not per query head.
    pub fn keys_by_head(&self, l: usize, positions: Range<usize>, head_dim: usize, out: &mut [f32]) {
        let kv_dim = self.layout.kv_dim;
        if head_dim == kv_dim {
            return self.rows_f32(l, positions, |p| p.rows(false), out); // one KV head: rows are already by head
        }
        let (n, ty, row_bytes) = (positions.len(), self.layout.ty.quant_type(), self.layout.row_bytes);
        let mut rows = vec![0f32; BLOCK.min(n) * kv_dim]; // (positions of one block, kv_dim)
        self.each_run(
            l,
            positions,
            |p| p.rows(false),
            |j0, bytes| {
                let rows = &mut rows[..bytes.len() / row_bytes * kv_dim];
                dequantize(ty, bytes, rows).expect("rows of kv_dim values fit the layout");
                for (j, row) in (j0..).zip(rows.chunks_exact(kv_dim)) {
                    for (g, head) in row.chunks_exact(head_dim).enumerate() {
                        out[(g * n + j) * head_dim..][..head_dim].copy_from_slice(head);
                    }
                }
            },
        );
    }

    /// Values of positions `positions` of layer `l`, as f32: (positions, kv_dim) into `out`.
    pub fn values_f32(&self, l: usize, positions: Range<usize>, out: &mut [f32]) {
        self.rows_f32(l, positions, |p| p.rows(true), out);
    }

    /// Rows of positions `positions` of layer `l`'s keys or values, as f32: (positions, kv_dim).
    fn rows_f32(&self, l: usize, positions: Range<usize>, which: impl Fn(&Part) -> &Vec<u16>, out: &mut [f32]) {
        let (ty, kv_dim, row_bytes) = (self.layout.ty.quant_type(), self.layout.kv_dim, self.layout.row_bytes);
        self.each_run(l, positions, which, |j0, bytes| {
            let dst = &mut out[j0 * kv_dim..][..bytes.len() / row_bytes * kv_dim];
            dequantize(ty, bytes, dst).expect("rows of kv_dim values fit the layout");
        });
    }

    /// `f(j, bytes)` for each run of `positions` that lies in one block: `j` is the run's first
    /// index within `positions`, `bytes` its rows in the cache's format.
    fn each_run(
        &self,
        l: usize,
        positions: Range<usize>,
        which: impl Fn(&Part) -> &Vec<u16>,
        mut f: impl FnMut(usize, &[u8]),
    ) {
        let row_bytes = self.layout.row_bytes;
        let mut pos = positions.start;
        while pos < positions.end {
            let (b, first) = (pos / BLOCK, pos % BLOCK);
            let n = (BLOCK - first).min(positions.end - pos); // positions in this block
            let (part, row0) = self.rows(l, b);
            let bytes: &[u8] = bytemuck::cast_slice(which(part));
            f(
                pos - positions.start,
                &bytes[row0 + first * row_bytes..][..n * row_bytes],
            );
            pos += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows a test stores at position `p`: key value `i` is `p·16 + i` (exact in f16),
    /// its value row the negatives.
    fn key(p: usize, i: usize) -> f32 {
        (p * 16 + i) as f32
    }

    #[test]
    fn keys_come_head_by_head_and_values_row_by_row() {
        // Two KV heads of 4 values; positions 30..40 cross a block boundary.
        let (head_dim, kv_dim, n) = (4, 8, 40);
        let layout =
            Arc::new(KvLayout::new(KvType::F16, kv_dim, &[false], 512, Arc::new(KvMemory::default())).unwrap());
        let mut cache = KvCache::new(layout, 64);
        cache.reserve(n).unwrap();
        for p in 0..n {
            let k: Vec<f32> = (0..kv_dim).map(|i| key(p, i)).collect();
            let v: Vec<f32> = k.iter().map(|x| -x).collect();
            cache.store(0, p, &k, &v);
        }
        cache.advance(n);
        let positions = 30..40;
        let mut keys = vec![f32::NAN; positions.len() * kv_dim];
        cache.keys_by_head(0, positions.clone(), head_dim, &mut keys);
        let mut values = vec![f32::NAN; positions.len() * kv_dim];
        cache.values_f32(0, positions.clone(), &mut values);
        for (j, p) in positions.clone().enumerate() {
            for i in 0..kv_dim {
                let (g, d) = (i / head_dim, i % head_dim);
                assert_eq!(
                    keys[(g * positions.len() + j) * head_dim + d],
                    key(p, i),
                    "key head {g}, position {p}, value {d}"
                );
                assert_eq!(
                    values[j * kv_dim + i],
                    -key(p, i),
                    "value row of position {p}, value {i}"
                );
            }
        }
        // One KV head: its keys are the rows themselves.
        let mut one_head = vec![f32::NAN; positions.len() * kv_dim];
        cache.keys_by_head(0, positions.clone(), kv_dim, &mut one_head);
        assert_eq!(one_head, values.iter().map(|v| -v).collect::<Vec<_>>());
    }
}
