// BF16: the top 2 bytes of an f32.
fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let base = (row + c * 64u) >> 2u;
    for (var i = 0u; i < 8u; i++) {
        let a = w[base + 2u * i];
        let b = w[base + 2u * i + 1u];
        out[i] = vec4<f32>(bitcast<f32>(a << 16u), bitcast<f32>(a & 0xffff0000u), bitcast<f32>(b << 16u), bitcast<f32>(b & 0xffff0000u));
    }
    return out;
}
