// Q8_0: blocks of 32 values: f16 scale d, then 32 signed bytes q; value = d·q. Padded to 36
// bytes (d, 2 bytes, q).
fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let b = row + c * 36u;
    let d = f16_pair(b).x;
    for (var i = 0u; i < 8u; i++) {
        out[i] = d * vec4<f32>(unpack4xI8(word(b + 4u + 4u * i)));
    }
    return out;
}
