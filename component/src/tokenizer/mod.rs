//! Tokenizers built from GGUF metadata (`tokenizer.ggml.*`), matching llama.cpp token for token.
//!
//! Text is first split around special tokens (user-defined tokens always, control tokens when
//! asked: `parse_special`), longest first, as llama.cpp's `tokenizer_st_partition` does; the
//! pieces between are encoded by the model's algorithm: SentencePiece-style merges by score
//! (`tokenizer.ggml.model = llama`) or GPT-2 byte-level BPE by merge rank (`gpt2`).

mod bpe;
mod spm;
mod stream;

pub use stream::StreamDecoder;

/// The printable character GPT-2's byte-level BPE writes for byte `b`.
pub fn gpt2_byte_char(b: u8) -> char {
    bpe::byte_to_char()[b as usize]
}

use crate::gguf::{Array, Gguf};
use std::collections::HashMap;

pub type TokenId = u32;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenizerError {
    #[error("tokenizer metadata: {0}")]
    Metadata(String),
    #[error("tokenizer {0} is not supported")]
    Unsupported(String),
    #[error("token id {0} is outside the vocabulary of {1}")]
    UnknownId(TokenId, usize),
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenKind {
    fn from_id(id: i32) -> TokenKind {
        match id {
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            5 => TokenKind::Unused,
            6 => TokenKind::Byte,
            _ => TokenKind::Normal,
        }
    }
}

/// SentencePiece marks spaces with U+2581 ("▁").
const SPACE_MARK: &str = "\u{2581}";

/// How text between special tokens becomes tokens.
enum Algorithm {
    SentencePiece,
    BytePairs(Box<bpe::Bpe>),
}

pub struct Tokenizer {
    algorithm: Algorithm,
    tokens: Vec<String>,
    scores: Vec<f32>,
    kinds: Vec<TokenKind>,
    ids: HashMap<String, TokenId>,
    /// Tokens matched in raw text before encoding, longest first: (text, id, is_control).
    specials: Vec<(String, TokenId, bool)>,
    /// The token for each byte value (`<0xXX>`), for characters the vocabulary lacks.
    byte_tokens: [Option<TokenId>; 256],
    pub bos: Option<TokenId>,
    pub eos: Option<TokenId>,
    /// End of turn (`<end_of_turn>`, `<|im_end|>`, ...): generation stops here too.
    pub eot: Option<TokenId>,
    pub add_bos: bool,
    add_space_prefix: bool,
}

impl Tokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
        let meta = |e: crate::gguf::GgufError| TokenizerError::Metadata(e.to_string());
        let model = g.str("tokenizer.ggml.model").map_err(meta)?;
        let algorithm = match model {
            "llama" => Algorithm::SentencePiece,
            "gpt2" => {
                let merges = match g.array("tokenizer.ggml.merges").map_err(meta)? {
                    Array::String(m) => m.iter().map(str::to_string).collect::<Vec<_>>(),
                    a => {
                        return Err(TokenizerError::Metadata(format!(
                            "tokenizer.ggml.merges: expected strings, found {:?}",
                            a.element_type()
                        )))
                    }
                };
                let pre = g.str("tokenizer.ggml.pre").unwrap_or("default");
                Algorithm::BytePairs(Box::new(bpe::Bpe::new(pre, merges.into_iter())?))
            }
            m => {
                return Err(TokenizerError::Unsupported(format!(
                    "model {m:?} (supported: \"llama\" SentencePiece, \"gpt2\" byte-level BPE)"
                )))
            }
        };
        let is_spm = matches!(algorithm, Algorithm::SentencePiece);
        let tokens: Vec<String> = match g.array("tokenizer.ggml.tokens").map_err(meta)? {
            Array::String(s) => s.iter().map(str::to_string).collect(),
            a => {
                return Err(TokenizerError::Metadata(format!(
                    "tokenizer.ggml.tokens: expected strings, found {:?}",
                    a.element_type()
                )))
            }
        };
        let n = tokens.len();
        let scores = match g.array("tokenizer.ggml.scores") {
            Ok(Array::F32(s)) if s.len() == n => s.clone(),
            Ok(_) => {
                return Err(TokenizerError::Metadata(format!(
                    "tokenizer.ggml.scores: expected {n} f32 values"
                )))
            }
            Err(_) => vec![0.0; n],
        };
        let kinds = match g.array("tokenizer.ggml.token_type") {
            Ok(Array::I32(t)) if t.len() == n => t.iter().map(|&t| TokenKind::from_id(t)).collect(),
            Ok(_) => {
                return Err(TokenizerError::Metadata(format!(
                    "tokenizer.ggml.token_type: expected {n} i32 values"
                )))
            }
            Err(_) => vec![TokenKind::Normal; n],
        };
        let id_key = |key: &str| -> Result<Option<TokenId>, TokenizerError> {
            match g.get(key) {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(id) if (id as usize) < n => Ok(Some(id as TokenId)),
                    _ => Err(TokenizerError::Metadata(format!(
                        "{key} = {v} is not a token id below {n}"
                    ))),
                },
            }
        };
        let mut ids = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            // The first id wins when a vocabulary repeats a string.
            ids.entry(t.clone()).or_insert(i as TokenId);
        }
        let mut specials: Vec<(String, TokenId, bool)> = kinds
            .iter()
            .enumerate()
            .filter(|(i, k)| {
                matches!(k, TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown) && !tokens[*i].is_empty()
            })
            .map(|(i, k)| (tokens[i].clone(), i as TokenId, *k != TokenKind::UserDefined))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = ids.get(&format!("<0x{b:02X}>")).copied();
        }
        let eot = id_key("tokenizer.ggml.eot_token_id")?.or_else(|| {
            ["<end_of_turn>", "<|eot_id|>", "<|im_end|>", "<|end|>"]
                .iter()
                .find_map(|t| ids.get(*t).copied())
        });
        Ok(Tokenizer {
            bos: id_key("tokenizer.ggml.bos_token_id")?,
            eos: id_key("tokenizer.ggml.eos_token_id")?,
            eot,
            // llama.cpp's defaults: SentencePiece models add BOS and a space prefix, BPE models neither.
            add_bos: g.bool("tokenizer.ggml.add_bos_token").unwrap_or(is_spm),
            add_space_prefix: g.bool("tokenizer.ggml.add_space_prefix").unwrap_or(is_spm),
            algorithm,
            tokens,
            scores,
            kinds,
            ids,
            specials,
            byte_tokens,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn kind(&self, id: TokenId) -> Option<TokenKind> {
        self.kinds.get(id as usize).copied()
    }

    pub fn id(&self, text: &str) -> Option<TokenId> {
        self.ids.get(text).copied()
    }

    /// Token ids for `text`: BOS first when `add_bos` (and the model wants it); control tokens
    /// written in the text become their ids only when `parse_special`.
    pub fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> Vec<TokenId> {
        let mut out = Vec::new();
        if add_bos && self.add_bos {
            out.extend(self.bos);
        }
        let mut first = true;
        for fragment in self.partition(text, parse_special) {
            match fragment {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(t) => match &self.algorithm {
                    Algorithm::SentencePiece => {
                        // Spaces become ▁, with one prepended to the start of the text.
                        let mut escaped = String::with_capacity(t.len() + 3);
                        if self.add_space_prefix && first {
                            escaped.push_str(SPACE_MARK);
                        }
                        escaped.push_str(&t.replace(' ', SPACE_MARK));
                        spm::encode(self, &escaped, &mut out);
                    }
                    Algorithm::BytePairs(bpe) if self.add_space_prefix && first => {
                        bpe.encode(self, &format!(" {t}"), &mut out)
                    }
                    Algorithm::BytePairs(bpe) => bpe.encode(self, t, &mut out),
                },
            }
            first = false;
        }
        out
    }

    /// Splits `text` around special tokens, longest first, leftmost occurrence first.
    fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut fragments = vec![Fragment::Text(text)];
        for (special, id, is_control) in &self.specials {
            if *is_control && !parse_special {
                continue;
            }
            if !fragments
                .iter()
                .any(|f| matches!(f, Fragment::Text(t) if t.contains(special.as_str())))
            {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for f in fragments {
                match f {
                    Fragment::Text(mut t) => {
                        while let Some(at) = t.find(special.as_str()) {
                            if at > 0 {
                                next.push(Fragment::Text(&t[..at]));
                            }
                            next.push(Fragment::Token(*id));
                            t = &t[at + special.len()..];
                        }
                        if !t.is_empty() {
                            next.push(Fragment::Text(t));
                        }
                    }
                    token => next.push(token),
                }
            }
            fragments = next;
        }
        fragments
    }

    /// The bytes token `id` stands for: `▁` as space, `<0xXX>` as that byte; control tokens
    /// are empty unless `special`.
    pub fn token_bytes(&self, id: TokenId, special: bool) -> Result<Vec<u8>, TokenizerError> {
        let text = self
            .tokens
            .get(id as usize)
            .ok_or(TokenizerError::UnknownId(id, self.tokens.len()))?;
        Ok(match self.kinds[id as usize] {
            TokenKind::Byte => parse_byte_token(text).map(|b| vec![b]).unwrap_or_default(),
            TokenKind::Control | TokenKind::Unknown | TokenKind::Unused if !special => Vec::new(),
            TokenKind::Normal => match &self.algorithm {
                Algorithm::SentencePiece => text.replace(SPACE_MARK, " ").into_bytes(),
                Algorithm::BytePairs(bpe) => bpe.decode_token(text),
            },
            _ => text.as_bytes().to_vec(),
        })
    }

    /// The text of `ids` (invalid UTF-8 from partial byte tokens is replaced with U+FFFD).
    pub fn decode(&self, ids: &[TokenId], special: bool) -> Result<String, TokenizerError> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id, special)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Whether generation should stop at `id` (end of sequence or end of turn).
    pub fn is_end(&self, id: TokenId) -> bool {
        Some(id) == self.eos || Some(id) == self.eot
    }
}

enum Fragment<'t> {
    Text(&'t str),
    Token(TokenId),
}

fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}
