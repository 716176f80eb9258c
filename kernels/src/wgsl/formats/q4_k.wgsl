// Q4_K: 144-byte blocks of 256 values in 8 sub-blocks of 32: f16 d and dmin, 12 bytes of 6-bit
// scales and minimums, 128 bytes of nibbles (sub-blocks 2p and 2p+1 are the low and high
// nibbles of bytes 32p..32p+32); value = d·scale·q − dmin·min.
fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let b = row + (c / 8u) * 144u;
    let j = c % 8u;
    let sm = k_scale_min(b + 4u, j);
    let dm = f16_pair(b);
    let d = dm.x * sm.x;
    let m = dm.y * sm.y;
    let q = b + 16u + (j / 2u) * 32u;
    for (var i = 0u; i < 8u; i++) {
        out[i] = d * nibbles_at(q + 4u * i, (j & 1u) == 1u) - m;
    }
    return out;
}
