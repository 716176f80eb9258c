//! Turning a stream of tokens into text without ever emitting broken UTF-8: bytes of a
//! character split across tokens are held until the character completes.

use super::{TokenId, Tokenizer, TokenizerError};

#[derive(Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The text that token `id` completes (possibly empty while a character is incomplete).
    pub fn push(&mut self, tok: &Tokenizer, id: TokenId) -> Result<String, TokenizerError> {
        self.pending.extend(tok.token_bytes(id, false)?);
        Ok(self.take_complete())
    }

    /// Whatever is still held at the end, with invalid bytes replaced by U+FFFD.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }

    fn take_complete(&mut self) -> String {
        let valid_up_to = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An incomplete character at the end (error_len None) waits for more bytes;
            // bytes that can never be valid are replaced now.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => {
                let end = incomplete_tail_start(&self.pending);
                let text = String::from_utf8_lossy(&self.pending[..end]).into_owned();
                self.pending.drain(..end);
                return text;
            }
        };
        let text = std::str::from_utf8(&self.pending[..valid_up_to])
            .expect("checked")
            .to_string();
        self.pending.drain(..valid_up_to);
        text
    }
}

/// Where a trailing incomplete-but-possibly-valid character starts (or the length if none).
fn incomplete_tail_start(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let i = bytes.len() - back;
        let b = bytes[i];
        if b & 0xc0 != 0x80 {
            let need = if b >= 0xf0 {
                4
            } else if b >= 0xe0 {
                3
            } else if b >= 0xc0 {
                2
            } else {
                1
            };
            return if need > back { i } else { bytes.len() };
        }
    }
    bytes.len()
}
