// out (n, cols): row tokens[t] of the embedding table, times `scale`, for the tokens whose row
// lies in this slice of the table (rows row0..row0 + rows). One workgroup per (token, chunk of
// 32 values × 64).

struct Params {
    rows: u32,
    cols: u32,
    n: u32,
    row_bytes: u32,
    row0: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    if (c >= p.cols / 32u || t >= p.n) {
        return;
    }
    let token = tokens[t];
    if (token < p.row0 || token >= p.row0 + p.rows) {
        return;
    }
    let v = dequant((token - p.row0) * p.row_bytes, c);
    for (var i = 0u; i < 8u; i++) {
        out[(t * p.cols + c * 32u) / 4u + i] = v[i] * p.scale;
    }
}
