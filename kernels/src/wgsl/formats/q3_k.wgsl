// Q3_K: blocks of 256 values: 32 bytes of high-bit masks, 64 bytes of 2-bit values, 12 bytes
// of 16 packed 6-bit scales, f16 d; padded to 112 bytes. Group j of half n (as Q2_K's) takes
// mask bit 4n + j of byte l; value = d·(scale − 32)·(q − 4·(1 − mask)).
fn q3_scale(s: u32, i: u32) -> f32 {
    let low = select(byte_at(s + i - 8u) >> 4u, byte_at(s + i) & 0xfu, i < 8u);
    let high = (byte_at(s + 8u + i % 4u) >> (2u * (i / 4u))) & 3u;
    return f32(i32(low | (high << 4u)) - 32);
}

fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let b = row + (c / 8u) * 112u;
    let s = c % 8u;
    let n = s / 4u;
    let j = s % 4u;
    let d = f16_pair(b + 108u).x;
    for (var i = 0u; i < 8u; i++) {
        let v = byte_bits(word(b + 32u + 32u * n + 4u * i), 2u * j, 3u);
        let mask = byte_bits(word(b + 4u * i), 4u * n + j, 1u);
        out[i] = d * q3_scale(b + 96u, 8u * n + 2u * j + i / 4u) * (v - 4.0 * (1.0 - mask));
    }
    return out;
}
