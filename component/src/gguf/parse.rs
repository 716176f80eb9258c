//! The GGUF header parser: magic, version, metadata, tensor infos, with every count, length and
//! offset checked before it is trusted.
//!
//! Layout (little-endian): "GGUF" · version u32 · tensor_count u64 · kv_count u64 ·
//! kv_count × (key string · type u32 · value) · tensor_count × (name string · n_dims u32 ·
//! n_dims × u64 · type u32 · offset u64) · padding to `general.alignment` · tensor data.
//! A string is a u64 byte length and UTF-8 bytes; an array is element type u32 · count u64 · values.

use super::{Array, Gguf, GgufError, StringArray, TensorInfo, Value, ValueType};
use rill_kernels::QuantType;
use std::collections::HashSet;

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: u32 = 4;
/// Sanity caps that hold even when the total file size is unknown (incremental reading).
const MAX_STRING_LEN: u64 = 1 << 30;
const MAX_ARRAY_LEN: u64 = 1 << 32;
const MAX_ARRAY_DEPTH: u32 = 8;

/// Reads little-endian fields from a byte prefix of a file of (maybe) known length.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The whole file's length when known: lengths beyond it are invalid, not truncated.
    file_len: Option<u64>,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    /// Bytes after the cursor that the file can still hold.
    fn room(&self) -> u64 {
        self.file_len.unwrap_or(u64::MAX).saturating_sub(self.offset())
    }

    fn take(&mut self, n: u64, field: &str) -> Result<&'a [u8], GgufError> {
        let offset = self.offset();
        let needed = offset.saturating_add(n);
        if let Some(len) = self.file_len {
            if needed > len {
                return Err(GgufError::invalid(
                    field,
                    offset,
                    format!("needs {n} bytes but the file ends at byte {len}"),
                ));
            }
        }
        if needed > self.bytes.len() as u64 {
            return Err(GgufError::Truncated {
                field: field.to_string(),
                offset,
                needed,
                available: self.bytes.len() as u64,
            });
        }
        let out = &self.bytes[self.pos..needed as usize];
        self.pos = needed as usize;
        Ok(out)
    }

    fn fixed<const N: usize>(&mut self, field: &str) -> Result<[u8; N], GgufError> {
        Ok(self.take(N as u64, field)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self, field: &str) -> Result<u32, GgufError> {
        self.fixed(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &str) -> Result<u64, GgufError> {
        self.fixed(field).map(u64::from_le_bytes)
    }

    /// A count of items of at least `min_size` bytes each, checked against the room left.
    fn count(&mut self, field: &str, min_size: u64, cap: u64) -> Result<u64, GgufError> {
        let offset = self.offset();
        let n = self.u64(field)?;
        if n > cap || n.saturating_mul(min_size) > self.room() {
            return Err(GgufError::invalid(
                field,
                offset,
                format!("count {n} cannot fit in the bytes that follow"),
            ));
        }
        Ok(n)
    }

    fn string(&mut self, field: &str) -> Result<String, GgufError> {
        self.str(field).map(str::to_string)
    }

    fn str(&mut self, field: &str) -> Result<&'a str, GgufError> {
        let offset = self.offset();
        let len = self.u64(field)?;
        if len > MAX_STRING_LEN {
            return Err(GgufError::invalid(
                field,
                offset,
                format!("string length {len} is over the {MAX_STRING_LEN}-byte limit"),
            ));
        }
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes)
            .map_err(|e| GgufError::invalid(field, offset + 8, format!("string is not UTF-8 ({e})")))
    }

    fn value_type(&mut self, field: &str) -> Result<ValueType, GgufError> {
        let offset = self.offset();
        let id = self.u32(field)?;
        ValueType::from_id(id).ok_or_else(|| GgufError::invalid(field, offset, format!("unknown value type {id}")))
    }

    fn value(&mut self, ty: ValueType, field: &str) -> Result<Value, GgufError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.fixed::<1>(field)?[0]),
            ValueType::I8 => Value::I8(self.fixed::<1>(field)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.fixed(field)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.fixed(field)?)),
            ValueType::U32 => Value::U32(self.u32(field)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.fixed(field)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.fixed(field)?)),
            ValueType::U64 => Value::U64(self.u64(field)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.fixed(field)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.fixed(field)?)),
            ValueType::Bool => {
                let offset = self.offset();
                match self.fixed::<1>(field)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(GgufError::invalid(
                            field,
                            offset,
                            format!("bool byte {b} is neither 0 nor 1"),
                        ))
                    }
                }
            }
            ValueType::String => Value::String(self.string(field)?),
            ValueType::Array => Value::Array(self.array(field, 0)?),
        })
    }

    /// An array: element type, count, then the elements, read into a packed [`Array`].
    fn array(&mut self, field: &str, depth: u32) -> Result<Array, GgufError> {
        let offset = self.offset();
        if depth >= MAX_ARRAY_DEPTH {
            return Err(GgufError::invalid(
                field,
                offset,
                format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"),
            ));
        }
        let elem = self.value_type(field)?;
        let n = self.count(field, elem.min_size(), MAX_ARRAY_LEN)?;
        // Fixed-size elements arrive as one slice; `count` has bounded n · size by the room left.
        macro_rules! packed {
            ($variant:ident, $t:ty) => {{
                let bytes = self.take(n * elem.min_size(), field)?;
                Array::$variant(
                    bytes
                        .chunks_exact(std::mem::size_of::<$t>())
                        .map(|b| <$t>::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                )
            }};
        }
        Ok(match elem {
            ValueType::U8 => Array::U8(self.take(n, field)?.to_vec()),
            ValueType::I8 => packed!(I8, i8),
            ValueType::U16 => packed!(U16, u16),
            ValueType::I16 => packed!(I16, i16),
            ValueType::U32 => packed!(U32, u32),
            ValueType::I32 => packed!(I32, i32),
            ValueType::F32 => packed!(F32, f32),
            ValueType::U64 => packed!(U64, u64),
            ValueType::I64 => packed!(I64, i64),
            ValueType::F64 => packed!(F64, f64),
            ValueType::Bool => {
                let at = self.offset();
                let bytes = self.take(n, field)?;
                if let Some(i) = bytes.iter().position(|&b| b > 1) {
                    return Err(GgufError::invalid(
                        field,
                        at + i as u64,
                        format!("bool byte {} is neither 0 nor 1", bytes[i]),
                    ));
                }
                Array::Bool(bytes.iter().map(|&b| b == 1).collect())
            }
            ValueType::String => Array::String(self.strings(field, n)?),
            ValueType::Array => {
                // Bounded by the bytes we have, not the count: a lying count fails on truncation first.
                let mut items = Vec::with_capacity(n.min((self.bytes.len() - self.pos) as u64 / 12) as usize);
                for _ in 0..n {
                    items.push(self.array(field, depth + 1)?);
                }
                Array::Array(items)
            }
        })
    }

    /// `n` strings, packed. Vocabularies hold hundreds of thousands, so the bytes are copied
    /// first and checked as UTF-8 in one SIMD pass: the whole is valid and every end is a
    /// character boundary exactly when each string is valid.
    fn strings(&mut self, field: &str, n: u64) -> Result<StringArray, GgufError> {
        let start = self.pos;
        let have = (self.bytes.len() - start) as u64;
        let mut text = Vec::with_capacity(have.min(n.saturating_mul(16)) as usize);
        let mut ends = Vec::with_capacity(n.min(have / 8) as usize);
        let limit = self.file_len.unwrap_or(u64::MAX).min(self.bytes.len() as u64);
        for _ in 0..n {
            // The common case inline; anything unusual goes through `str`, which reports it.
            let fast = self.bytes.get(self.pos..self.pos + 8).and_then(|b| {
                let len = u64::from_le_bytes(b.try_into().unwrap());
                let end = (self.pos as u64 + 8).checked_add(len)?;
                (len <= MAX_STRING_LEN && end <= limit).then_some(end as usize)
            });
            match fast {
                Some(end) => {
                    text.extend_from_slice(&self.bytes[self.pos + 8..end]);
                    self.pos = end;
                }
                None => return Err(self.str(field).expect_err("str rejects what the fast path does")),
            }
            ends.push(text.len());
        }
        if simdutf8::basic::from_utf8(&text).is_ok() {
            // SAFETY: just validated as UTF-8.
            let text = unsafe { String::from_utf8_unchecked(text) };
            if ends.iter().all(|&e| text.is_char_boundary(e)) {
                return Ok(StringArray::from_parts(text, ends));
            }
        }
        // Re-read one by one to name the offending string.
        self.pos = start;
        for _ in 0..n {
            self.str(field)?;
        }
        unreachable!("a string failed the packed UTF-8 check but passed alone")
    }

    fn tensor_info(&mut self, index: u64, alignment: u64) -> Result<TensorInfo, GgufError> {
        let field = format!("tensor_infos[{index}]");
        let name = self.string(&format!("{field}.name"))?;
        let field = format!("tensor {name:?}");
        let dims_offset = self.offset();
        let n_dims = self.u32(&format!("{field} n_dims"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(GgufError::invalid(
                format!("{field} n_dims"),
                dims_offset,
                format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
            ));
        }
        let shape_offset = self.offset();
        let mut shape = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            shape.push(self.u64(&format!("{field} shape"))?);
        }
        let n_elements = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                GgufError::invalid(
                    format!("{field} shape"),
                    shape_offset,
                    format!("{shape:?} has more elements than fit in 63 bits"),
                )
            })?;
        let type_offset = self.offset();
        let type_id = self.u32(&format!("{field} type"))?;
        let ty = QuantType::from_ggml_id(type_id).ok_or_else(|| {
            GgufError::invalid(
                format!("{field} type"),
                type_offset,
                format!("unknown or unsupported tensor type id {type_id}"),
            )
        })?;
        if shape[0] % ty.block_size() as u64 != 0 {
            return Err(GgufError::invalid(
                format!("{field} shape"),
                shape_offset,
                format!(
                    "row length {} is not a multiple of the {ty} block size {}",
                    shape[0],
                    ty.block_size()
                ),
            ));
        }
        let n_bytes = (n_elements / ty.block_size() as u64)
            .checked_mul(ty.type_size() as u64)
            .ok_or_else(|| GgufError::invalid(format!("{field} shape"), shape_offset, "byte size overflows"))?;
        let offset_offset = self.offset();
        let offset = self.u64(&format!("{field} offset"))?;
        if offset % alignment != 0 {
            return Err(GgufError::invalid(
                format!("{field} offset"),
                offset_offset,
                format!("data offset {offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        Ok(TensorInfo {
            name,
            shape,
            ty,
            offset,
            n_bytes,
            n_elements,
        })
    }
}

/// Parses the header from `bytes`, a prefix of a file of `file_len` bytes when known.
/// A `Truncated` error means the prefix is too short; any other error is final.
pub fn parse_header(bytes: &[u8], file_len: Option<u64>) -> Result<Gguf, GgufError> {
    let mut c = Cursor {
        bytes,
        pos: 0,
        file_len,
    };
    let magic = c.fixed::<4>("magic")?;
    if &magic != MAGIC {
        return Err(GgufError::invalid(
            "magic",
            0,
            format!("expected \"GGUF\", found {magic:02x?}: not a GGUF file"),
        ));
    }
    let version = c.u32("version")?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(GgufError::invalid(
                "version",
                4,
                "GGUF version 1 (32-bit counts) is not supported; re-convert the model",
            ))
        }
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err(GgufError::invalid("version", 4, "big-endian GGUF is not supported"));
        }
        v => {
            return Err(GgufError::invalid(
                "version",
                4,
                format!("unsupported version {v} (2 and 3 are supported)"),
            ))
        }
    }
    // Smallest tensor info: name length, n_dims, one dim, type, offset; smallest key-value: key length, type, one byte.
    let tensor_count = c.count("tensor_count", 8 + 4 + 8 + 4 + 8, MAX_ARRAY_LEN)?;
    let kv_count = c.count("kv_count", 8 + 4 + 1, MAX_ARRAY_LEN)?;

    let mut metadata = Vec::with_capacity(kv_count.min(1024) as usize);
    let mut keys = HashSet::new();
    for i in 0..kv_count {
        let key_offset = c.offset();
        let key = c.string(&format!("metadata[{i}].key"))?;
        if !keys.insert(key.clone()) {
            return Err(GgufError::invalid(
                format!("metadata key {key:?}"),
                key_offset,
                "duplicate key",
            ));
        }
        let ty = c.value_type(&key)?;
        let value = c.value(ty, &key)?;
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, Value::U32(a))) if a.is_power_of_two() => *a as u64,
        Some((_, v)) => {
            return Err(GgufError::invalid(
                "general.alignment",
                0,
                format!("must be a power-of-two u32, found {v} ({:?})", v.value_type()),
            ));
        }
    };

    let mut tensors = Vec::with_capacity(tensor_count.min(1 << 16) as usize);
    let mut names = HashSet::new();
    for i in 0..tensor_count {
        let at = c.offset();
        let info = c.tensor_info(i, alignment)?;
        if !names.insert(info.name.clone()) {
            return Err(GgufError::invalid(
                format!("tensor {:?}", info.name),
                at,
                "duplicate tensor name",
            ));
        }
        tensors.push(info);
    }

    let header_end = c.offset();
    let data_offset = header_end.div_ceil(alignment) * alignment;
    check_tensor_ranges(&tensors, data_offset, file_len)?;
    Ok(Gguf {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

/// Tensor data must not overlap and, when the file length is known, must lie inside the file.
pub fn check_tensor_ranges(tensors: &[TensorInfo], data_offset: u64, file_len: Option<u64>) -> Result<(), GgufError> {
    let mut ranges: Vec<(u64, u64, &str)> = Vec::with_capacity(tensors.len());
    for t in tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(GgufError::invalid(
                format!("tensor {:?} offset", t.name),
                data_offset,
                "data range overflows",
            ));
        };
        if let Some(len) = file_len {
            if end > len {
                return Err(GgufError::invalid(
                    format!("tensor {:?} data", t.name),
                    start,
                    format!(
                        "{} bytes from byte {start} run past the end of the {len}-byte file",
                        t.n_bytes
                    ),
                ));
            }
        }
        ranges.push((start, end, &t.name));
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(GgufError::invalid(
                format!("tensor {:?} data", w[1].2),
                w[1].0,
                format!("overlaps tensor {:?}", w[0].2),
            ));
        }
    }
    Ok(())
}
