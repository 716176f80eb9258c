// KV rows of f16 pairs: a head is head_dim / 2 words, pair d in word d.

fn head_words() -> u32 {
    return p.head_dim / 2u;
}

// The words of a head that pair d (values 2d and 2d + 1) is read from.
fn pair_words(d: u32) -> vec2<u32> {
    return vec2<u32>(d, d);
}

fn decode_pair(d: u32, words: vec2<u32>) -> vec2<f32> {
    return unpack2x16float(words.x);
}
