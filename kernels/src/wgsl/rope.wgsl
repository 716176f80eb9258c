// Rotary position embedding, NeoX layout (value i of a head pairs with value i + half), from a
// table of each token's cos and sin per frequency made on the CPU, where sin and cos of large
// angles are exact: (n, half) pairs, already times the magnitude scale.

struct Params {
    n: u32,
    head_dim: u32,
    q_heads: u32,
    kv_heads: u32,
}

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k: array<f32>;
@group(0) @binding(2) var<storage, read> cos_sin: array<vec2<f32>>;
@group(0) @binding(3) var<uniform> p: Params;

// One invocation per (token, head of q then k, frequency).
@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let half = p.head_dim / 2u;
    let heads = p.q_heads + p.kv_heads;
    let i = (wg.y * 65535u + wg.x) * 256u + lid;
    if (i >= p.n * heads * half) {
        return;
    }
    let f = i % half;
    let h = (i / half) % heads;
    let t = i / (half * heads);
    let cs = cos_sin[t * half + f];
    if (h < p.q_heads) {
        let at = (t * p.q_heads + h) * p.head_dim + f;
        let a = q[at];
        let b = q[at + half];
        q[at] = a * cs.x - b * cs.y;
        q[at + half] = a * cs.y + b * cs.x;
    } else {
        let at = (t * p.kv_heads + h - p.q_heads) * p.head_dim + f;
        let a = k[at];
        let b = k[at + half];
        k[at] = a * cs.x - b * cs.y;
        k[at + half] = a * cs.y + b * cs.x;
    }
}
