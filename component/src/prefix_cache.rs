//! Prefix reuse: the KV blocks of token sequences seen before, kept so that a sequence starting
//! the same way (a shared system prompt, the history of a chat) starts from them instead of
//! recomputing them.
//!
//! Blocks are found by a hash chain: block `i`'s key covers every token up to its end, so a
//! block is only reused after the same whole prefix. Blocks are reference counted (the cache
//! and the sequences using them share one copy); the least recently used are dropped when the
//! cache holds more than its budget.

use crate::model::{Block, KvLayout, KvType, BLOCK};
use crate::tokenizer::TokenId;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// The default budget: bytes of blocks the cache keeps (blocks that running sequences also
/// hold are counted too).
pub const DEFAULT_BUDGET: usize = 64 << 20;

pub struct PrefixCache {
    entries: HashMap<u64, Entry>,
    pub budget: usize,
    bytes: usize,
    /// Ticks at every lookup and insertion; an entry's `last_used` is the tick it was last used.
    clock: u64,
}

struct Entry {
    /// The block's own tokens, checked on lookup so a hash collision cannot reuse a wrong block.
    tokens: [TokenId; BLOCK],
    block: Block,
    last_used: u64,
}

/// The chain keys of the full blocks of `tokens` in a cache of type `ty`: key `i` covers
/// tokens `0..(i+1)·BLOCK`.
fn chain(ty: KvType, tokens: &[TokenId]) -> impl Iterator<Item = (u64, &[TokenId])> {
    tokens
        .chunks_exact(BLOCK)
        .scan(None, move |parent: &mut Option<u64>, block| {
            let mut h = DefaultHasher::new();
            (ty, *parent, block).hash(&mut h);
            let key = h.finish();
            *parent = Some(key);
            Some((key, block))
        })
}

impl Default for PrefixCache {
    fn default() -> Self {
        PrefixCache {
            entries: HashMap::new(),
            budget: DEFAULT_BUDGET,
            bytes: 0,
            clock: 0,
        }
    }
}

impl PrefixCache {
    /// The cached blocks that start `tokens`, at most `max_blocks`: as many as are cached in a
    /// row and still hold what a sequence continuing after them needs (the sliding-window
    /// layers' part of the blocks in the window).
    pub fn lookup(&mut self, layout: &KvLayout, tokens: &[TokenId], max_blocks: usize) -> Vec<Block> {
        self.clock += 1;
        let mut blocks: Vec<Block> = Vec::new();
        for (key, block_tokens) in chain(layout.ty, tokens).take(max_blocks) {
            match self.entries.get_mut(&key) {
                Some(e) if e.tokens == block_tokens => {
                    e.last_used = self.clock;
                    blocks.push(e.block.clone());
                }
                _ => break,
            }
        }
        // Continuing after n blocks needs the window's blocks whole (n = 0 always can).
        let n = (0..=blocks.len())
            .rev()
            .find(|&n| usable(layout, &blocks[..n]))
            .unwrap_or(0);
        blocks.truncate(n);
        blocks
    }

    /// Keeps the full `blocks` of a sequence that holds `tokens` (or refreshes them).
    pub fn insert(&mut self, layout: &KvLayout, tokens: &[TokenId], blocks: &[Block]) {
        self.clock += 1;
        for ((key, block_tokens), block) in chain(layout.ty, tokens).zip(blocks) {
            match self.entries.get_mut(&key) {
                Some(e) => {
                    e.last_used = self.clock;
                    if e.block.local.is_none() && block.local.is_some() {
                        self.bytes += block.bytes() - e.block.bytes();
                        e.block.local = block.local.clone();
                    }
                }
                None => {
                    self.bytes += block.bytes();
                    let tokens = block_tokens.try_into().expect("chain yields whole blocks");
                    self.entries.insert(
                        key,
                        Entry {
                            tokens,
                            block: block.clone(),
                            last_used: self.clock,
                        },
                    );
                }
            }
        }
        self.evict();
    }

    /// Drops least recently used entries until the cache is within its budget.
    fn evict(&mut self) {
        if self.bytes <= self.budget {
            return;
        }
        let mut by_age: Vec<(u64, u64)> = self.entries.iter().map(|(k, e)| (e.last_used, *k)).collect();
        by_age.sort_unstable();
        for (_, key) in by_age {
            if self.bytes <= self.budget {
                break;
            }
            if let Some(e) = self.entries.remove(&key) {
                self.bytes -= e.block.bytes();
            }
        }
    }

    /// Bytes of the blocks held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops every entry; whether there were any.
    pub fn clear(&mut self) -> bool {
        let had = !self.entries.is_empty();
        self.entries.clear();
        self.bytes = 0;
        had
    }
}

/// Whether a sequence can continue after `blocks`: every block the next token's window
/// reaches still has its sliding-window part.
fn usable(layout: &KvLayout, blocks: &[Block]) -> bool {
    match layout.window_start(blocks.len() * BLOCK) {
        Some(start) => blocks[start / BLOCK..].iter().all(|b| b.local.is_some()),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KvCache;
    use std::sync::Arc;

    /// Two layers of 32 values; the first slides over 40 positions.
    fn layout() -> Arc<KvLayout> {
        Arc::new(KvLayout::new(KvType::F16, 32, &[true, false], 40, Default::default()).unwrap())
    }

    /// The full blocks of a cache that has filled `n` blocks.
    fn filled(layout: &Arc<KvLayout>, n: usize) -> Vec<Block> {
        let mut cache = KvCache::new(layout.clone(), 1 << 20);
        cache.reserve(n * BLOCK).unwrap();
        cache.advance(n * BLOCK);
        cache.full_blocks().to_vec()
    }

    fn tokens(first: u32, n: usize) -> Vec<TokenId> {
        (first..first + n as u32).collect()
    }

    #[test]
    fn a_prefix_is_found_only_after_the_same_tokens() {
        let layout = Arc::new(KvLayout::new(KvType::F16, 32, &[false, false], 0, Default::default()).unwrap());
        let mut cache = PrefixCache::default();
        let seq = tokens(0, 3 * BLOCK);
        cache.insert(&layout, &seq, &filled(&layout, 3));
        assert_eq!(cache.lookup(&layout, &seq, 3).len(), 3);
        assert_eq!(cache.lookup(&layout, &seq, 2).len(), 2);
        // Differing in the second block: only the first is shared.
        let mut other = seq.clone();
        other[BLOCK + 3] += 1000;
        assert_eq!(cache.lookup(&layout, &other, 3).len(), 1);
        // Differing in the first block: nothing, though the later tokens are the same.
        other[0] += 1000;
        assert!(cache.lookup(&layout, &other, 3).is_empty());
        // The same tokens in a cache of another type: nothing.
        let q8 = Arc::new(KvLayout::new(KvType::Q8_0, 32, &[false, false], 0, Default::default()).unwrap());
        assert!(cache.lookup(&q8, &seq, 3).is_empty());
    }

    #[test]
    fn blocks_that_slid_out_of_the_window_serve_only_longer_prefixes() {
        let (layout, mut cache) = (layout(), PrefixCache::default());
        // After 4 blocks, position 128 sees back to 89: blocks 0 and 1 dropped their sliding part.
        let held = filled(&layout, 4);
        assert!(held[1].local.is_none() && held[2].local.is_some());
        let seq = tokens(0, 4 * BLOCK);
        cache.insert(&layout, &seq, &held);
        assert_eq!(cache.lookup(&layout, &seq, 4).len(), 4);
        // Continuing after block 2 would need block 1's sliding part, after block 1 block 0's.
        assert_eq!(cache.lookup(&layout, &seq, 3).len(), 0);
    }

    #[test]
    fn least_recently_used_blocks_are_dropped_over_budget() {
        let (layout, mut cache) = (layout(), PrefixCache::default());
        let block_bytes = filled(&layout, 1)[0].bytes();
        cache.budget = 2 * block_bytes;
        cache.insert(&layout, &tokens(0, BLOCK), &filled(&layout, 1));
        cache.insert(&layout, &tokens(100, BLOCK), &filled(&layout, 1));
        assert_eq!(cache.lookup(&layout, &tokens(0, BLOCK), 1).len(), 1); // now the most recent
        cache.insert(&layout, &tokens(200, BLOCK), &filled(&layout, 1));
        assert_eq!(cache.bytes(), 2 * block_bytes);
        assert!(
            cache.lookup(&layout, &tokens(100, BLOCK), 1).is_empty(),
            "the least recently used went"
        );
        assert_eq!(cache.lookup(&layout, &tokens(0, BLOCK), 1).len(), 1);
        assert_eq!(cache.lookup(&layout, &tokens(200, BLOCK), 1).len(), 1);
    }
}
