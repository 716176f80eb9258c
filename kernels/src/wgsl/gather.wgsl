// a (rows, width) = the listed rows of b (the positions whose logits are wanted), one
// invocation per value.

struct Params {
    len: u32,    // rows × width
    width: u32,
}

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> rows: array<u32>;

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wg.y * 65535u + wg.x) * 256u + lid;
    if (i < p.len) {
        a[i] = b[rows[i / p.width] * p.width + i % p.width];
    }
}
