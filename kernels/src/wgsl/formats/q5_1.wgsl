// Q5_1: 24-byte blocks of 32 values: f16 scale d and minimum m, 32 high bits, nibbles;
// value = d·(q + 16·high) + m.
fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let b = row + c * 24u;
    let dm = f16_pair(b);
    let qh = word(b + 4u);
    for (var i = 0u; i < 8u; i++) {
        out[i] = dm.x * (nibbles_at(b + 8u + 4u * (i % 4u), i >= 4u) + 16.0 * bits4(qh, 4u * i)) + dm.y;
    }
    return out;
}
