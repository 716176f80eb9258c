// Q6_K: blocks of 256 values: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16
// signed 8-bit scales (one per 16 values), f16 d; padded to 212 bytes. Each half of 128 values
// is 4 groups of 32: group k takes the low (k < 2) or high nibbles of bytes l (k even) or
// 32 + l (k odd) of the half's 64, and bits 2k..2k+2 of high byte l; value = d·scale·(q − 32).
fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let b = row + (c / 8u) * 212u;
    let s = c % 8u;
    let n = s / 4u;
    let k = s % 4u;
    let d = f16_pair(b + 208u).x;
    let ql = b + 64u * n + select(0u, 32u, (k & 1u) == 1u);
    let qh = b + 128u + 32u * n;
    for (var i = 0u; i < 8u; i++) {
        let high = byte_bits(word(qh + 4u * i), 2u * k, 3u);
        let scale = f32(bitcast<i32>(byte_at(b + 192u + 8u * n + i / 4u + 2u * k) << 24u) >> 24u);
        out[i] = (d * scale) * (nibbles_at(ql + 4u * i, k >= 2u) + 16.0 * high - 32.0);
    }
    return out;
}
