// Q4_0: blocks of 32 values: f16 scale d, 16 bytes of nibbles (value j < 16 in the low nibble
// of byte j, value 16 + j in its high nibble); value = d·(q − 8). Padded to 20 bytes (d, 2
// bytes, nibbles).
fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let b = row + c * 20u;
    let d = f16_pair(b).x;
    for (var i = 0u; i < 8u; i++) {
        out[i] = d * (nibbles_at(b + 4u + 4u * (i % 4u), i >= 4u) - 8.0);
    }
    return out;
}
