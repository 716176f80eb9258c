// F32: 4 bytes a value.
fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let base = (row + c * 128u) >> 2u;
    for (var i = 0u; i < 8u; i++) {
        out[i] = vec4<f32>(bitcast<f32>(w[base + 4u * i]), bitcast<f32>(w[base + 4u * i + 1u]), bitcast<f32>(w[base + 4u * i + 2u]), bitcast<f32>(w[base + 4u * i + 3u]));
    }
    return out;
}
