//! Reading a GGUF file that arrives in chunks (a download, a stream into a Wasm guest).

use super::{parse, Gguf, GgufError};

/// How far a chunked read has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub bytes_seen: u64,
    /// Tensors whose data has fully arrived (0 until the header has).
    pub tensors_ready: usize,
    /// Tensors in the file, once the header has arrived.
    pub tensors_total: Option<usize>,
}

/// Buffers a file as it arrives, parsing the header as soon as it is complete.
pub struct ChunkedReader {
    buf: Vec<u8>,
    file_len: Option<u64>,
    header: Option<Gguf>,
    /// Don't re-parse before the buffer reaches this length: the last attempt needed it, and
    /// waiting for an eighth more than the attempted length keeps the total re-parsing work
    /// linear in the header size (a vocabulary array alone can be megabytes) while finding
    /// the header at most an eighth of its size late.
    retry_at: u64,
    /// Tensor data ends, sorted, for counting ready tensors.
    ends: Vec<u64>,
}

impl ChunkedReader {
    /// `file_len`, when known, lets the header be checked against the whole file's size.
    pub fn new(file_len: Option<u64>) -> ChunkedReader {
        ChunkedReader {
            buf: Vec::new(),
            file_len,
            header: None,
            retry_at: 0,
            ends: Vec::new(),
        }
    }

    /// Appends the next bytes of the file.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Progress, GgufError> {
        let seen = self.buf.len() as u64 + chunk.len() as u64;
        if let Some(len) = self.file_len {
            if seen > len {
                return Err(GgufError::invalid(
                    "file",
                    seen,
                    format!("more bytes than the announced {len}"),
                ));
            }
        }
        let reserve = match self.file_len {
            Some(len) => len as usize - self.buf.len(),
            None => chunk.len(),
        };
        self.buf.try_reserve(reserve).map_err(|_| GgufError::OutOfMemory {
            bytes: (self.buf.len() + reserve) as u64,
        })?;
        self.buf.extend_from_slice(chunk);
        if self.header.is_none() && seen >= self.retry_at {
            match parse::parse_header(&self.buf, self.file_len) {
                Ok(header) => {
                    self.ends = header
                        .tensors
                        .iter()
                        .map(|t| header.data_offset + t.offset + t.n_bytes)
                        .collect();
                    self.ends.sort_unstable();
                    self.header = Some(header);
                }
                Err(GgufError::Truncated { needed, .. }) => self.retry_at = needed.max(seen + seen / 8),
                Err(e) => return Err(e),
            }
        }
        Ok(self.progress())
    }

    pub fn progress(&self) -> Progress {
        let seen = self.buf.len() as u64;
        Progress {
            bytes_seen: seen,
            tensors_ready: self.ends.partition_point(|&end| end <= seen),
            tensors_total: self.header.as_ref().map(|h| h.tensors.len()),
        }
    }

    /// The header, once it has arrived.
    pub fn header(&self) -> Option<&Gguf> {
        self.header.as_ref()
    }

    /// Ends the read: the header and the whole file's bytes, or why they are incomplete.
    pub fn finish(self) -> Result<(Gguf, Vec<u8>), GgufError> {
        let header = match self.header {
            Some(h) => h,
            // A last parse without the retry threshold: it either succeeds or says what is missing.
            None => parse::parse_header(&self.buf, self.file_len)?,
        };
        let have = self.buf.len() as u64;
        parse::check_tensor_ranges(&header.tensors, header.data_offset, Some(have)).map_err(|e| match e {
            GgufError::Invalid { field, offset, .. } => GgufError::Truncated {
                field,
                offset,
                needed: header.file_len(),
                available: have,
            },
            e => e,
        })?;
        Ok((header, self.buf))
    }
}
