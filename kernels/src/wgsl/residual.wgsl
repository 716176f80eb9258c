// The residual connection where no mat-mul folds it in: x = x_in + RMSNorm(y)·w (a block's
// output norm, where the model has one) or x = x_in + y, one workgroup per row (rows beyond
// 65,535 continue in grid row y). Out of place: the residual stream alternates between two
// buffers, so that a mat-mul can read one while it writes the other.

struct Params {
    width: u32,
    rows: u32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> x_in: array<f32>;

@compute @workgroup_size(256)
fn residual_normed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wg.y * 65535u + wg.x;
    if (r >= p.rows) {
        return;
    }
    let row = r * p.width;
    var s = 0.0;
    for (var i = lid; i < p.width; i += 256u) {
        s += y[row + i] * y[row + i];
    }
    let scale = inverseSqrt(workgroup_sum(lid, s) / f32(p.width) + p.eps);
    for (var i = lid; i < p.width; i += 256u) {
        x[row + i] = x_in[row + i] + y[row + i] * scale * w[i];
    }
}

@compute @workgroup_size(256)
fn residual(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wg.y * 65535u + wg.x;
    if (r >= p.rows) {
        return;
    }
    for (var i = lid; i < p.width; i += 256u) {
        x[r * p.width + i] = x_in[r * p.width + i] + y[r * p.width + i];
    }
}
