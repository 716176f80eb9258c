//! Dequantisation and activation quantisation, bit for bit against the `gguf` Python package.
//!
//! The fixtures come from `tests/quant_fixtures.py` (see that file); `tests/run` writes them to
//! `target/quant-fixtures` and sets `RILL_QUANT_FIXTURES`.

use rill_kernels::{dequantize, quantize_activations, QuantType};
use std::path::PathBuf;

struct Case {
    kind: String,
    name: String,
    ty: QuantType,
    n: usize,
    input: Vec<u8>,
    expected: Vec<u8>,
}

fn fixtures() -> Vec<Case> {
    let dir = std::env::var("RILL_QUANT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/quant-fixtures")));
    let index = std::fs::read_to_string(dir.join("index.tsv")).unwrap_or_else(|e| {
        panic!(
            "no quantisation fixtures in {} ({e}); run tests/run, or python3 tests/quant_fixtures.py MODEL {}",
            dir.display(),
            dir.display()
        )
    });
    index
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let read = |ext: &str| std::fs::read(dir.join(format!("{}.{ext}", f[1]))).unwrap();
            Case {
                kind: f[0].to_string(),
                name: f[1].to_string(),
                ty: QuantType::from_name(f[2]).unwrap_or_else(|| panic!("unknown type {}", f[2])),
                n: f[3].parse().unwrap(),
                input: read("in"),
                expected: read("out"),
            }
        })
        .collect()
}

/// Copies bytes into u64-aligned storage so every block type can view them.
fn aligned(bytes: &[u8]) -> Vec<u64> {
    let mut v = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut v)[..bytes.len()].copy_from_slice(bytes);
    v
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn dequantize_matches_gguf_py_bit_for_bit() {
    let cases = fixtures();
    let mut seen = std::collections::BTreeSet::new();
    for c in cases.iter().filter(|c| c.kind == "dequant") {
        let storage = aligned(&c.input);
        let data = &bytemuck::cast_slice::<u64, u8>(&storage)[..c.input.len()];
        let mut out = vec![0f32; c.n];
        dequantize(c.ty, data, &mut out).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let expected = f32s(&c.expected);
        for (i, (got, want)) in out.iter().zip(&expected).enumerate() {
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{} ({}) value {i}: {got} vs gguf-py {want}",
                c.name,
                c.ty
            );
        }
        seen.insert((c.name.split('-').next().unwrap().to_string(), c.ty.name()));
    }
    // Every format on random blocks, and every type the reference model uses on its real tensors.
    for ty in QuantType::ALL.iter().filter(|t| **t != QuantType::F32) {
        assert!(
            seen.contains(&("random".to_string(), ty.name())),
            "no random-block case for {ty}"
        );
    }
    for ty in ["F32", "Q8_0", "Q5_0", "Q4_K", "Q6_K"] {
        assert!(
            seen.contains(&("model".to_string(), ty)),
            "no model tensor of type {ty}"
        );
    }
}

#[test]
fn quantize_matches_ggml_reference_bit_for_bit() {
    let cases = fixtures();
    let quantize_cases: Vec<_> = cases.iter().filter(|c| c.kind == "quantize").collect();
    assert_eq!(quantize_cases.len(), 5, "F16, BF16, Q8_0, Q8_1, Q8_K");
    for c in quantize_cases {
        let x = f32s(&c.input);
        let mut storage = aligned(&vec![0u8; c.expected.len()]);
        let out = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut storage)[..c.expected.len()];
        quantize_activations(c.ty, &x, out).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        if let Some(i) = out.iter().zip(&c.expected).position(|(a, b)| a != b) {
            let block = i / c.ty.type_size();
            panic!("{} differs from the reference at byte {i} (block {block})", c.name);
        }
    }
}
