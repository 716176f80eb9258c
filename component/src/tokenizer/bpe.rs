//! GPT-2-style byte-level BPE, as llama.cpp's `llm_tokenizer_bpe` does it: split the text with
//! the model's pre-tokenizer regex, map each piece's bytes to printable characters (GPT-2's
//! `bytes_to_unicode`), then apply merges lowest rank first.

use super::{TokenId, Tokenizer, TokenizerError};
use fancy_regex::Regex;
use std::collections::HashMap;

/// The pre-tokenizer regexes of the `tokenizer.ggml.pre` values Rill knows (from llama.cpp).
fn pre_tokenizer_pattern(pre: &str) -> Option<&'static str> {
    const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    match pre {
        "default" | "gpt2" | "gpt-2" => Some(GPT2),
        "llama3" | "llama-bpe" | "smaug-bpe" => Some(LLAMA3),
        "qwen2" | "deepseek-r1-qwen" => Some(QWEN2),
        _ => None,
    }
}

pub const SUPPORTED_PRE: &str = "default, gpt2, llama3, llama-bpe, smaug-bpe, qwen2, deepseek-r1-qwen";

/// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes stand
/// for themselves, the rest are shifted to U+0100 onwards.
pub fn byte_to_char() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut map = ['\0'; 256];
    let mut next = 256;
    for b in 0..256u32 {
        map[b as usize] = if printable(b) {
            char::from_u32(b).expect("Latin-1")
        } else {
            next += 1;
            char::from_u32(next - 1).expect("below the surrogates")
        };
    }
    map
}

pub struct Bpe {
    pre: Regex,
    /// Rank of each merge "left right" (lower merges first).
    ranks: HashMap<(String, String), usize>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
}

impl Bpe {
    pub fn new(pre: &str, merges: impl Iterator<Item = String>) -> Result<Bpe, TokenizerError> {
        let pattern = pre_tokenizer_pattern(pre).ok_or_else(|| {
            TokenizerError::Unsupported(format!("gpt2 with pre-tokenizer {pre:?} (supported: {SUPPORTED_PRE})"))
        })?;
        let pre = Regex::new(pattern).map_err(|e| TokenizerError::Metadata(format!("pre-tokenizer regex: {e}")))?;
        let mut ranks = HashMap::new();
        for (rank, m) in merges.enumerate() {
            let (a, b) = m.split_once(' ').ok_or_else(|| {
                TokenizerError::Metadata(format!("tokenizer.ggml.merges[{rank}] = {m:?} is not \"left right\""))
            })?;
            ranks.entry((a.to_string(), b.to_string())).or_insert(rank);
        }
        let byte_to_char = byte_to_char();
        let char_to_byte = byte_to_char.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        Ok(Bpe {
            pre,
            ranks,
            byte_to_char,
            char_to_byte,
        })
    }

    pub fn encode(&self, tok: &Tokenizer, text: &str, out: &mut Vec<TokenId>) {
        // fancy-regex only fails on backtracking limits; keep the rest of the text as one piece then.
        let mut pieces = Vec::new();
        let mut last = 0;
        for m in self.pre.find_iter(text) {
            let Ok(m) = m else { break };
            pieces.push(m.as_str());
            last = m.end();
        }
        if last < text.len() {
            pieces.push(&text[last..]);
        }
        for piece in pieces {
            let mapped: String = piece.bytes().map(|b| self.byte_to_char[b as usize]).collect();
            self.merge(tok, &mapped, out);
        }
    }

    /// Merges the characters of one pre-token, lowest-ranked adjacent pair first.
    fn merge(&self, tok: &Tokenizer, word: &str, out: &mut Vec<TokenId>) {
        if let Some(id) = tok.id(word) {
            out.push(id);
            return;
        }
        let mut parts: Vec<String> = word.chars().map(String::from).collect();
        loop {
            let best = parts
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| self.ranks.get(&(w[0].clone(), w[1].clone())).map(|&r| (r, i)))
                .min();
            let Some((_, i)) = best else { break };
            let right = parts.remove(i + 1);
            parts[i].push_str(&right);
        }
        for p in parts {
            match tok.id(&p) {
                Some(id) => out.push(id),
                // A piece the vocabulary lacks: its characters one by one, skipping unknown ones.
                None => out.extend(p.chars().filter_map(|c| tok.id(&c.to_string()))),
            }
        }
    }

    /// The bytes a byte-level token's text stands for.
    pub fn decode_token(&self, text: &str) -> Vec<u8> {
        text.chars()
            .map(|c| self.char_to_byte.get(&c).copied().unwrap_or(b'?'))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_map_is_gpt2s() {
        let m = super::byte_to_char();
        assert_eq!(m[b'a' as usize], 'a');
        assert_eq!(m[b' ' as usize], 'Ġ');
        assert_eq!(m[b'\n' as usize], 'Ċ');
        let mut all: Vec<char> = m.to_vec();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 256, "reversible");
    }
}
