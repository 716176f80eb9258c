//! SentencePiece-style encoding as llama.cpp's `llm_tokenizer_spm` does it: start from single
//! characters and repeatedly merge the adjacent pair whose concatenation is the vocabulary
//! token with the highest score (leftmost on ties); characters no token covers fall back to
//! byte tokens.

use super::{TokenId, Tokenizer};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A run of the text: `start..start+len`, linked to its neighbours; `len == 0` once merged away.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of symbols `left` and its successor, valid while `left`'s run is still
/// `len` bytes short of the merged length.
struct Bigram {
    score: f32,
    left: usize,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Highest score first; on a tie, the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then(other.left.cmp(&self.left))
    }
}

pub fn encode(tok: &Tokenizer, text: &str, out: &mut Vec<TokenId>) {
    let mut symbols: Vec<Symbol> = text
        .char_indices()
        .enumerate()
        .map(|(i, (start, c))| Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: None,
        })
        .collect();
    let n = symbols.len();
    for (i, s) in symbols.iter_mut().enumerate() {
        s.next = (i + 1 < n).then_some(i + 1);
    }

    let mut queue = BinaryHeap::new();
    let try_pair = |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: Option<usize>, right: Option<usize>| {
        let (Some(l), Some(r)) = (left, right) else { return };
        let (a, b) = (symbols[l], symbols[r]);
        let piece = &text[a.start..b.start + b.len];
        if let Some(id) = tok.id(piece) {
            queue.push(Bigram {
                score: tok.scores[id as usize],
                left: l,
                len: piece.len(),
            });
        }
    };
    for i in 1..n {
        try_pair(&symbols, &mut queue, Some(i - 1), Some(i));
    }

    while let Some(bigram) = queue.pop() {
        let left = symbols[bigram.left];
        let Some(r) = left.next else { continue };
        let right = symbols[r];
        // Stale: one side has merged since this pair was queued.
        if left.len == 0 || right.len == 0 || left.len + right.len != bigram.len {
            continue;
        }
        symbols[bigram.left].len += right.len;
        symbols[bigram.left].next = right.next;
        symbols[r].len = 0;
        if let Some(after) = right.next {
            symbols[after].prev = Some(bigram.left);
        }
        try_pair(&symbols, &mut queue, left.prev, Some(bigram.left));
        try_pair(&symbols, &mut queue, Some(bigram.left), right.next);
    }

    let mut i = (n > 0).then_some(0);
    while let Some(s) = i {
        let sym = symbols[s];
        let piece = &text[sym.start..sym.start + sym.len];
        match tok.id(piece) {
            Some(id) => out.push(id),
            None => out.extend(piece.bytes().filter_map(|b| tok.byte_tokens[b as usize])),
        }
        i = sym.next;
    }
}
