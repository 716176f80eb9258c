// Storing KV rows of f16 pairs (after kv/f16.wgsl and head_input.wgsl).

// Word w of a head's row for the values `source` gives (head_input.wgsl).
fn encode(w: u32, base: u32, is_value: bool) -> u32 {
    return pack2x16float(vec2<f32>(source(2u * w, base, is_value), source(2u * w + 1u, base, is_value)));
}
