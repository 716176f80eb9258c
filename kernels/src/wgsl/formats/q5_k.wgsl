// Q5_K: 176-byte blocks of 256 values: f16 d and dmin, 12 bytes of scales and minimums (as
// Q4_K's), 32 bytes of high bits (bit j of byte l for value l of sub-block j), 128 bytes of
// nibbles (as Q4_K's); value = d·scale·(q + 16·high) − dmin·min.
fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let b = row + (c / 8u) * 176u;
    let j = c % 8u;
    let sm = k_scale_min(b + 4u, j);
    let dm = f16_pair(b);
    let d = dm.x * sm.x;
    let m = dm.y * sm.y;
    let q = b + 48u + (j / 2u) * 32u;
    for (var i = 0u; i < 8u; i++) {
        let high = byte_bits(word(b + 16u + 4u * i), j, 1u);
        out[i] = d * (nibbles_at(q + 4u * i, (j & 1u) == 1u) + 16.0 * high) - m;
    }
    return out;
}
