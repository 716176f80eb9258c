//! The tokenizer against llama.cpp's ids for the reference model (shared/reference).

mod common;

use rill_engine::gguf::Gguf;
use rill_engine::tokenizer::{StreamDecoder, Tokenizer};

fn tokenizer() -> Tokenizer {
    let file = common::model_bytes();
    Tokenizer::from_gguf(&Gguf::parse(&file).unwrap()).unwrap()
}

#[test]
fn matches_llama_cpp_on_every_reference_case() {
    let tok = tokenizer();
    let reference = common::reference_json("gemma-3-270m.tokenizer.json");
    assert_eq!(reference["add_bos"], false);
    assert_eq!(reference["parse_special"], false);
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 18);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.encode(text, false, false), want, "{text:?}");
        assert_eq!(
            tok.decode(&want, false).unwrap(),
            case["roundtrip"].as_str().unwrap(),
            "{text:?}"
        );
    }
}

#[test]
fn bos_and_special_tokens() {
    let tok = tokenizer();
    assert_eq!((tok.bos, tok.eos, tok.eot), (Some(2), Some(1), Some(106)));
    assert_eq!(tok.encode("Hello world", true, false), vec![2, 9259, 1902]);
    // Control tokens are text unless asked for.
    assert_eq!(
        tok.encode("<start_of_turn>user\nhi<end_of_turn>", false, true),
        vec![105, 2364, 107, 2202, 106]
    );
    assert_ne!(tok.encode("<start_of_turn>", false, false), vec![105]);
    assert_eq!(tok.decode(&[105, 2364], false).unwrap(), "user");
    assert_eq!(tok.decode(&[105, 2364], true).unwrap(), "<start_of_turn>user");
    assert!(tok.is_end(1) && tok.is_end(106) && !tok.is_end(2));
    assert!(tok.decode(&[u32::MAX], false).is_err());
}

#[test]
fn streaming_holds_split_characters() {
    let tok = tokenizer();
    // A character missing from the vocabulary falls back to byte tokens, one byte each.
    let text = "a\u{10FFFD}b";
    let ids = tok.encode(text, false, false);
    assert!(ids.len() >= 6, "{ids:?} should use byte tokens");
    let mut dec = StreamDecoder::new();
    let mut pieces = Vec::new();
    for &id in &ids {
        pieces.push(dec.push(&tok, id).unwrap());
    }
    pieces.push(dec.finish());
    assert_eq!(pieces.concat(), text);
    assert!(
        pieces.iter().any(|p| p.is_empty()),
        "bytes of the split character were held: {pieces:?}"
    );
}

/// A small byte-level BPE vocabulary: the 256 byte characters, five merges, one control token.
fn bpe_tokenizer(pre: &str) -> Result<Tokenizer, rill_engine::tokenizer::TokenizerError> {
    use common::Writer;
    use rill_engine::gguf::{Array, Value};
    let byte_chars: Vec<String> = (0..=255u8)
        .map(|b| rill_engine::tokenizer::gpt2_byte_char(b).to_string())
        .collect();
    let mut tokens = byte_chars.clone();
    let merged = ["he", "ca", "the", "cat", "Ġcat", "<|end|>"];
    tokens.extend(merged.iter().map(|s| s.to_string()));
    let mut types = vec![1; tokens.len()];
    *types.last_mut().unwrap() = 3;
    let merges = ["h e", "c a", "t he", "ca t", "Ġ cat"];
    let mut w = Writer::new(3, 0, 6);
    w.kv("general.architecture", &Value::String("test".into()));
    w.kv("tokenizer.ggml.model", &Value::String("gpt2".into()));
    w.kv("tokenizer.ggml.pre", &Value::String(pre.into()));
    w.kv(
        "tokenizer.ggml.tokens",
        &Value::Array(Array::String(tokens.iter().map(String::as_str).collect())),
    );
    w.kv("tokenizer.ggml.token_type", &Value::Array(Array::I32(types)));
    w.kv(
        "tokenizer.ggml.merges",
        &Value::Array(Array::String(merges.into_iter().collect())),
    );
    Tokenizer::from_gguf(&Gguf::parse(&w.data(32, 0)).unwrap())
}

#[test]
fn byte_level_bpe_merges_by_rank_and_round_trips_any_text() {
    let tok = bpe_tokenizer("gpt2").unwrap();
    let id = |s: &str| tok.id(s).unwrap();
    assert_eq!(
        tok.encode("the cat", true, false),
        vec![id("the"), id("Ġcat")],
        "BPE models add no BOS by default"
    );
    // "h e" is the lowest-ranked merge and "t c" is none, so "tche" becomes t, c, he.
    assert_eq!(tok.encode("tche", false, false), vec![id("t"), id("c"), id("he")]);
    for text in ["naïve café 日本語 😀", "line\nbreak  two spaces", "the cat<|end|>"] {
        assert_eq!(tok.decode(&tok.encode(text, false, false), false).unwrap(), text);
    }
    assert_eq!(tok.encode("x<|end|>", false, true), vec![id("x"), id("<|end|>")]);
    for pre in ["llama3", "qwen2", "default"] {
        let t = bpe_tokenizer(pre).unwrap();
        assert_eq!(
            t.decode(&t.encode("It's 2024!\n\n ok", false, false), false).unwrap(),
            "It's 2024!\n\n ok",
            "{pre}"
        );
    }
    let e = bpe_tokenizer("no-such-pre").err().unwrap().to_string();
    assert!(e.contains("no-such-pre") && e.contains("llama3"), "{e}");
}
