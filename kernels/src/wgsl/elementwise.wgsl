// Element-wise steps of the forward pass, one invocation per value (or per row pair).

struct Params {
    len: u32,    // values (geglu, add), or rows × width (gather)
    width: u32,  // gather: values per row
}

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> rows: array<u32>;

// The index of this invocation over a grid of up to 65,535 × 65,535 workgroups of 256.
fn index(wg: vec3<u32>, lid: u32) -> u32 {
    return (wg.y * 65535u + wg.x) * 256u + lid;
}

// a = gelu(a) · b, GELU's tanh form written as x / (1 + e^(−2u)), as the CPU path computes it.
@compute @workgroup_size(256)
fn geglu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, lid);
    if (i < p.len) {
        let x = a[i];
        let u = 0.7978846 * (x + 0.044715 * x * x * x);
        a[i] = x / (1.0 + exp(clamp(-2.0 * u, -87.0, 88.0))) * b[i];
    }
}

// a += b.
@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, lid);
    if (i < p.len) {
        a[i] += b[i];
    }
}

// a (rows, width) = the listed rows of b.
@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, lid);
    if (i < p.len) {
        a[i] = b[rows[i / p.width] * p.width + i % p.width];
    }
}
