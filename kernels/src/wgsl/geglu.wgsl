// a = gelu(a) · b, one invocation per value: the gated feed-forward's activation where gate
// and up are not stacked (different formats). After gelu.wgsl.

struct Params {
    len: u32,
}

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(256)
fn geglu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wg.y * 65535u + wg.x) * 256u + lid;
    if (i < p.len) {
        a[i] = gelu(a[i]) * b[i];
    }
}
