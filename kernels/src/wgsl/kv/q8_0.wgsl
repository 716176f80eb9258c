// KV rows of Q8_0 blocks, a head at a time: its head_dim int8 quants (4 a word), then its
// head_dim / 32 f16 scales (2 a word; head_dim is a multiple of 64). As many bytes as ggml's
// blocks of 34, in an order whose fields are whole words.

fn head_words() -> u32 {
    return p.head_dim / 4u + p.head_dim / 64u;
}

// The words of a head that pair d (values 2d and 2d + 1) is read from: its quants' and its
// block's scale's.
fn pair_words(d: u32) -> vec2<u32> {
    return vec2<u32>(d / 2u, p.head_dim / 4u + d / 32u);
}

fn decode_pair(d: u32, words: vec2<u32>) -> vec2<f32> {
    let scale = unpack2x16float(words.y)[(d / 16u) % 2u];
    let shift = 16u * (d % 2u);
    // The pair's two bytes, sign-extended.
    let lo = i32(words.x << (24u - shift)) >> 24u;
    let hi = i32(words.x << (16u - shift)) >> 24u;
    return vec2<f32>(f32(lo), f32(hi)) * scale;
}
