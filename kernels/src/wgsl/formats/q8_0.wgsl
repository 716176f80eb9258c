// Q8_0: 34-byte blocks of 32 values: f16 scale d, then 32 signed bytes q; value = d·q.
fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let b = row + c * 34u;
    let d = f16_at(b);
    for (var i = 0u; i < 8u; i++) {
        out[i] = d * vec4<f32>(unpack4xI8(u32_at(b + 2u + 4u * i)));
    }
    return out;
}
