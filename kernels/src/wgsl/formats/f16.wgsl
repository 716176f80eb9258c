// F16: 2 bytes a value (rows of a multiple of 32 values keep every pair word-aligned).
fn dequant(row: u32, c: u32) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    let base = (row + c * 64u) >> 2u;
    for (var i = 0u; i < 8u; i++) {
        out[i] = vec4<f32>(unpack2x16float(w[base + 2u * i]), unpack2x16float(w[base + 2u * i + 1u]));
    }
    return out;
}
