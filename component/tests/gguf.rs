//! The GGUF reader on the reference model and on synthetic files built to be valid or broken.

mod common;

use common::{model_bytes, Writer};
use rill_engine::gguf::{Array, ChunkedReader, Gguf, GgufError, StringArray, Value, ValueType};
use rill_kernels::QuantType;

#[test]
fn reads_the_reference_model() {
    let file = model_bytes();
    let g = Gguf::parse(&file).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.tensors.len(), 236);
    assert_eq!(g.metadata.len(), 33);
    assert_eq!(g.architecture().unwrap(), "gemma3");
    assert_eq!(g.block_count().unwrap(), 18);
    assert_eq!(g.embedding_length().unwrap(), 640);
    assert_eq!(g.context_length().unwrap(), 32768);
    assert_eq!(g.arch_u32("attention.head_count").unwrap(), 4);
    assert_eq!(g.arch_u32("attention.sliding_window").unwrap(), 512);
    assert_eq!(g.arch_f32("rope.freq_base").unwrap(), 1_000_000.0);
    assert_eq!(g.str("tokenizer.ggml.model").unwrap(), "llama");
    assert_eq!(g.array("tokenizer.ggml.tokens").unwrap().len(), 262_144);
    assert!(g.bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(g.alignment, 32);
    assert_eq!(g.file_len(), file.len() as u64);

    let embd = g.tensor("token_embd.weight").unwrap();
    assert_eq!((embd.ty, embd.shape.as_slice()), (QuantType::Q8_0, &[640, 262_144][..]));
    assert_eq!(g.tensor_bytes(embd, &file).unwrap().len() as u64, embd.n_bytes);
    let total: u64 = g.tensors.iter().map(|t| t.n_bytes).sum();
    assert_eq!(
        total, 246_587_904,
        "total tensor bytes as in shared/reference tensors.json"
    );
    let count = |ty| g.tensors.iter().filter(|t| t.ty == ty).count();
    assert_eq!(
        [
            count(QuantType::F32),
            count(QuantType::Q5_0),
            count(QuantType::Q4K),
            count(QuantType::Q8_0),
            count(QuantType::Q6K)
        ],
        [109, 81, 27, 10, 9]
    );
}

#[test]
fn typed_accessors_name_the_key_when_wrong() {
    let file = model_bytes();
    let g = Gguf::parse(&file).unwrap();
    let e = g.u32("general.name").unwrap_err().to_string();
    assert!(e.contains("general.name") && e.contains("expected"), "{e}");
    let e = g.f32("gemma3.no_such_key").unwrap_err().to_string();
    assert!(e.contains("gemma3.no_such_key") && e.contains("missing"), "{e}");
}

#[test]
fn chunked_reading_gives_the_same_header_early_and_counts_ready_tensors() {
    let file = model_bytes();
    let whole = Gguf::parse(&file).unwrap();
    for (file_len, chunk) in [(Some(file.len() as u64), 1 << 20), (None, 65_537)] {
        let mut reader = ChunkedReader::new(file_len);
        let mut header_at = None;
        let mut last_ready = 0;
        for piece in file.chunks(chunk) {
            let p = reader.push(piece).unwrap();
            if header_at.is_none() && reader.header().is_some() {
                header_at = Some(p.bytes_seen);
            }
            assert!(p.tensors_ready >= last_ready);
            last_ready = p.tensors_ready;
        }
        let header_at = header_at.expect("header parsed");
        assert!(
            header_at <= whole.data_offset + whole.data_offset / 8 + chunk as u64,
            "header seen at {header_at}"
        );
        assert_eq!(reader.progress().tensors_ready, 236);
        assert_eq!(reader.progress().tensors_total, Some(236));
        let (g, bytes) = reader.finish().unwrap();
        assert_eq!(g.tensors, whole.tensors);
        assert_eq!(g.metadata, whole.metadata);
        assert_eq!(bytes.len(), file.len());
    }
}

#[test]
fn chunked_reading_of_a_partial_file_says_what_is_missing() {
    let file = model_bytes();
    let mut reader = ChunkedReader::new(None);
    reader.push(&file[..file.len() / 2]).unwrap();
    let e = reader.finish().unwrap_err();
    assert!(e.is_truncation(), "{e}");
    let mut reader = ChunkedReader::new(None);
    reader.push(&file[..1000]).unwrap();
    let e = reader.finish().unwrap_err();
    assert!(
        e.is_truncation() && e.to_string().contains("tokenizer.ggml.tokens"),
        "{e}"
    );
    let mut reader = ChunkedReader::new(Some(100));
    assert!(reader.push(&file[..101]).is_err(), "more bytes than announced");
}

fn all_value_types() -> Vec<(&'static str, Value)> {
    vec![
        ("u8", Value::U8(200)),
        ("i8", Value::I8(-5)),
        ("u16", Value::U16(65000)),
        ("i16", Value::I16(-300)),
        ("u32", Value::U32(4_000_000_000)),
        ("i32", Value::I32(-7)),
        ("f32", Value::F32(1.5)),
        ("bool", Value::Bool(true)),
        ("string", Value::String("héllo".into())),
        ("u64", Value::U64(1 << 40)),
        ("i64", Value::I64(-(1 << 40))),
        ("f64", Value::F64(-2.25)),
        ("array", Value::Array(Array::I32(vec![1, -2]))),
        ("bools", Value::Array(Array::Bool(vec![true, false]))),
        (
            "strings",
            Value::Array(Array::String(["", "ab", "ç"].into_iter().collect())),
        ),
        (
            "nested",
            Value::Array(Array::Array(vec![
                Array::String(["a"].into_iter().collect()),
                Array::String(StringArray::default()),
                Array::Array(vec![Array::F64(vec![0.5])]),
            ])),
        ),
    ]
}

/// A small valid file: every value type, custom alignment, two Q8_0 tensors.
fn synthetic(version: u32) -> Vec<u8> {
    let values = all_value_types();
    let mut w = Writer::new(version, 2, values.len() as u64 + 2);
    w.kv("general.architecture", &Value::String("test".into()));
    w.kv("general.alignment", &Value::U32(64));
    for (k, v) in &values {
        w.kv(k, v);
    }
    w.tensor("a", &[32, 2], QuantType::Q8_0 as u32, 0);
    w.tensor("b", &[64], QuantType::Q8_0 as u32, 128);
    w.data(64, 128 + 68)
}

#[test]
fn reads_every_value_type_in_v2_and_v3() {
    for version in [2, 3] {
        let file = synthetic(version);
        let g = Gguf::parse(&file).unwrap();
        assert_eq!(g.version, version);
        assert_eq!(g.alignment, 64);
        assert_eq!(g.data_offset % 64, 0);
        for (k, v) in all_value_types() {
            assert_eq!(g.get(k), Some(&v), "{k}");
        }
        assert_eq!(g.tensor("b").unwrap().n_bytes, 68);
        assert_eq!(g.u64("u8").unwrap(), 200);
        assert!(g.u64("i8").is_err(), "negative is not a u64");
        // Chunked reading, a byte at a time, finds the header once it is complete and not much
        // later (the re-parse backoff waits for an eighth more bytes).
        let mut reader = ChunkedReader::new(None);
        let mut found_at = None;
        for b in &file {
            let seen = reader.push(std::slice::from_ref(b)).unwrap().bytes_seen;
            found_at = found_at.or(reader.header().map(|_| seen));
        }
        let found_at = found_at.expect("header found");
        assert!(
            found_at <= g.data_offset * 9 / 8,
            "header found at {found_at}, data at {}",
            g.data_offset
        );
        assert_eq!(reader.finish().unwrap().0.metadata, g.metadata);
    }
}

/// Expects `file` to fail with a message that names `field` and the byte `offset`.
fn expect_error(file: &[u8], field: &str, offset: u64) -> GgufError {
    let e = Gguf::parse(file).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(field), "error should name {field:?}: {msg}");
    assert!(
        msg.contains(&format!("byte {offset}")),
        "error should give byte {offset}: {msg}"
    );
    e
}

#[test]
fn rejects_broken_headers_naming_field_and_offset() {
    let mut bad = synthetic(3);
    bad[0] = b'X';
    expect_error(&bad, "magic", 0);
    expect_error(&Writer::new(1, 0, 0).data(32, 0), "version", 4);
    expect_error(&Writer::new(7, 0, 0).data(32, 0), "version", 4);
    expect_error(&Writer::new(3u32.swap_bytes(), 0, 0).data(32, 0), "big-endian", 4);
    expect_error(&Writer::new(3, 0, u64::MAX).data(32, 0), "kv_count", 16);
    expect_error(&Writer::new(3, 1 << 40, 0).data(32, 0), "tensor_count", 8);

    let header = 24;
    let mut w = Writer::new(3, 0, 1);
    w.string("k").u32(99);
    expect_error(&w.data(32, 0), "unknown value type 99", header + 9);

    let mut w = Writer::new(3, 0, 1);
    w.string("k").u32(ValueType::Bool as u32).bytes.push(2);
    expect_error(&w.data(32, 0), "k", header + 13);

    let mut w = Writer::new(3, 0, 1);
    w.string("k")
        .u32(ValueType::String as u32)
        .u64(2)
        .bytes
        .extend_from_slice(&[0xff, 0xfe]);
    expect_error(&w.data(32, 0), "not UTF-8", header + 13 + 8);

    let mut w = Writer::new(3, 0, 1);
    w.string("k").u32(ValueType::String as u32).u64(1 << 50);
    expect_error(&w.data(32, 0), "k", header + 13);

    let mut w = Writer::new(3, 0, 1);
    w.string("k")
        .u32(ValueType::Array as u32)
        .u32(ValueType::U64 as u32)
        .u64(1 << 30);
    expect_error(&w.data(32, 0), "count", header + 17);

    let mut w = Writer::new(3, 0, 2);
    w.kv("k", &Value::U8(1)).kv("k", &Value::U8(2));
    expect_error(&w.data(32, 0), "duplicate", header + 14);

    for bad_alignment in [Value::U32(48), Value::U32(0), Value::U64(32)] {
        let mut w = Writer::new(3, 0, 1);
        w.kv("general.alignment", &bad_alignment);
        expect_error(&w.data(32, 0), "general.alignment", 0);
    }

    let tensor_at = header;
    let name_len = 8 + 1;
    let tensor_file = |shape: &[u64], ty: u32, offset: u64, data: usize| {
        let mut w = Writer::new(3, 1, 0);
        w.tensor("t", shape, ty, offset);
        w.data(32, data)
    };
    expect_error(&tensor_file(&[], 0, 0, 0), "n_dims", tensor_at + name_len);
    expect_error(&tensor_file(&[1, 1, 1, 1, 1], 0, 0, 0), "n_dims", tensor_at + name_len);
    expect_error(
        &tensor_file(&[1 << 32, 1 << 32], 0, 0, 0),
        "shape",
        tensor_at + name_len + 4,
    );
    expect_error(&tensor_file(&[32], 5, 0, 0), "type id 5", tensor_at + name_len + 4 + 8);
    expect_error(
        &tensor_file(&[33], QuantType::Q4_0 as u32, 0, 100),
        "block size",
        tensor_at + name_len + 4,
    );
    expect_error(
        &tensor_file(&[32], 0, 8, 200),
        "alignment",
        tensor_at + name_len + 4 + 8 + 4,
    );
    let data_start = (tensor_at + name_len + 4 + 8 + 4 + 8).div_ceil(32) * 32;
    expect_error(&tensor_file(&[32], 0, 0, 100), "past the end", data_start);

    let mut w = Writer::new(3, 2, 0);
    w.tensor("a", &[32], 0, 0).tensor("b", &[32], 0, 64);
    // Header of 24 + 2 × 33 bytes, padded to 96; "b" starts 64 bytes into the data.
    expect_error(&w.data(32, 256), "overlaps", 96 + 64);

    let mut w = Writer::new(3, 2, 0);
    w.tensor("a", &[8], 0, 0).tensor("a", &[8], 0, 32);
    expect_error(&w.data(32, 64), "duplicate tensor name", tensor_at + 33);
}
