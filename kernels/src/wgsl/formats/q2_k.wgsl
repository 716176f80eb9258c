// Q2_K: 84-byte blocks of 256 values: 16 bytes of 4-bit scale and minimum pairs (one per 16
// values), 64 bytes of 2-bit values, f16 d and dmin. Each half of 128 values is 4 groups of 32:
// group j takes bits 2j..2j+2 of bytes 32n..32n+32; value = d·scale·q − dmin·min.
fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let b = row + (c / 8u) * 84u;
    let s = c % 8u;
    let n = s / 4u;
    let j = s % 4u;
    let dm = f16_pair(b + 80u);
    for (var i = 0u; i < 8u; i++) {
        let sc = byte_at(b + 8u * n + 2u * j + i / 4u);
        let v = byte_bits(word(b + 16u + 32u * n + 4u * i), 2u * j, 3u);
        out[i] = dm.x * f32(sc & 0xfu) * v - dm.y * f32(sc >> 4u);
    }
    return out;
}
