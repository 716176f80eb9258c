// Q5_0: blocks of 32 values: f16 scale d, 32 high bits (bit j for value j), nibbles as Q4_0's;
// value = d·(q + 16·high − 16). Padded to 24 bytes (d, 2 bytes, high bits, nibbles).
fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let b = row + c * 24u;
    let d = f16_pair(b).x;
    let qh = word(b + 4u);
    for (var i = 0u; i < 8u; i++) {
        out[i] = d * (nibbles_at(b + 8u + 4u * (i % 4u), i >= 4u) + 16.0 * bits4(qh, 4u * i) - 16.0);
    }
    return out;
}
