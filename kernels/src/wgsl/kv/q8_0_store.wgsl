// Storing KV rows of Q8_0 blocks (after kv/q8_0.wgsl and head_input.wgsl).

// Block `block`'s scale: its largest magnitude / 127, as ggml's quantize_row_q8_0 makes it.
fn block_scale(block: u32, base: u32, is_value: bool) -> f32 {
    var amax = 0.0;
    for (var i = 32u * block; i < 32u * block + 32u; i++) {
        amax = max(amax, abs(source(i, base, is_value)));
    }
    return amax / 127.0;
}

// Word w of a head's row for the values `source` gives (head_input.wgsl): four quants, or
// two scales.
fn encode(w: u32, base: u32, is_value: bool) -> u32 {
    let quant_words = p.head_dim / 4u;
    if (w >= quant_words) {
        let block = 2u * (w - quant_words);
        return pack2x16float(vec2<f32>(block_scale(block, base, is_value), block_scale(block + 1u, base, is_value)));
    }
    let d = block_scale(4u * w / 32u, base, is_value);
    let inverse = select(0.0, 1.0 / d, d != 0.0);
    var word = 0u;
    for (var k = 0u; k < 4u; k++) {
        let q = i32(round(source(4u * w + k, base, is_value) * inverse));
        word |= (u32(q) & 0xffu) << (8u * k);
    }
    return word;
}
