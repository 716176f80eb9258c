// RMSNorm of each `width`-wide row, scaled by `weight`: one workgroup per row (rows beyond
// 65,535 continue in grid row y). `rms_norm` writes into `out`; `rms_norm_in_place` rewrites x
// (the per-head Q/K norms and the post-block norms).

struct Params {
    width: u32,
    rows: u32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read> weight: array<f32>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> sums: array<f32, 256>;

// 1 / rms of the row starting at x[start], computed by all 256 invocations together.
fn inverse_rms(start: u32, lid: u32) -> f32 {
    var s = 0.0;
    for (var i = lid; i < p.width; i += 256u) {
        s += x[start + i] * x[start + i];
    }
    sums[lid] = s;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step /= 2u) {
        if (lid < step) {
            sums[lid] += sums[lid + step];
        }
        workgroupBarrier();
    }
    return inverseSqrt(sums[0] / f32(p.width) + p.eps);
}

@compute @workgroup_size(256)
fn rms_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wg.y * 65535u + wg.x;
    if (r >= p.rows) {
        return;
    }
    let scale = inverse_rms(r * p.width, lid);
    for (var i = lid; i < p.width; i += 256u) {
        out[r * p.width + i] = x[r * p.width + i] * scale * weight[i];
    }
}

@compute @workgroup_size(256)
fn rms_norm_in_place(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wg.y * 65535u + wg.x;
    if (r >= p.rows) {
        return;
    }
    let scale = inverse_rms(r * p.width, lid);
    workgroupBarrier();
    for (var i = lid; i < p.width; i += 256u) {
        x[r * p.width + i] = x[r * p.width + i] * scale * weight[i];
    }
}
