// Q4_1: 20-byte blocks of 32 values: f16 scale d and minimum m, then nibbles as Q4_0's;
// value = d·q + m.
fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let b = row + c * 20u;
    let dm = f16_pair(b);
    for (var i = 0u; i < 8u; i++) {
        out[i] = dm.x * nibbles_at(b + 4u + 4u * (i % 4u), i >= 4u) + dm.y;
    }
    return out;
}
