// Q3_K: 110-byte blocks of 256 values: 32 bytes of high-bit masks, 64 bytes of 2-bit values,
// 12 bytes of 16 packed 6-bit scales, f16 d. Group j of half n (as Q2_K's) takes mask bit
// 4n + j of byte l; value = d·(scale − 32)·(q − 4·(1 − mask)).
fn q3_scale(s: u32, i: u32) -> f32 {
    let low = select(byte_at(s + i - 8u) >> 4u, byte_at(s + i) & 0xfu, i < 8u);
    let high = (byte_at(s + 8u + i % 4u) >> (2u * (i / 4u))) & 3u;
    return f32(i32(low | (high << 4u)) - 32);
}

fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let b = row + (c / 8u) * 110u;
    let s = c % 8u;
    let n = s / 4u;
    let j = s % 4u;
    let d = f16_at(b + 108u);
    for (var i = 0u; i < 8u; i++) {
        let q = u32_at(b + 32u + 32u * n + 4u * i) >> (2u * j);
        let v = vec4<f32>(f32(q & 3u), f32((q >> 8u) & 3u), f32((q >> 16u) & 3u), f32((q >> 24u) & 3u));
        let m = u32_at(b + 4u * i) >> (4u * n + j);
        let mask = vec4<f32>(f32(m & 1u), f32((m >> 8u) & 1u), f32((m >> 16u) & 1u), f32((m >> 24u) & 1u));
        out[i] = d * q3_scale(b + 96u, 8u * n + 2u * j + i / 4u) * (v - 4.0 * (1.0 - mask));
    }
    return out;
}
