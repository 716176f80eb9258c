// Stores the step's new keys and values in their sequences' slots (after kv_pages.wgsl).

@group(0) @binding(4) var<storage, read> k_new: array<f32>;
@group(0) @binding(5) var<storage, read> v_new: array<f32>;

// One invocation per (token, pair of values): the token's key and value rows into its slot.
@compute @workgroup_size(256)
fn store(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pairs = p.kv_dim / 2u;
    let t = gid.y;
    let i = gid.x;
    if (i >= pairs || t >= p.n) {
        return;
    }
    let tok = tokens[t];
    let at = key_row(tok.y, tok.x) + i;
    let src = t * p.kv_dim + 2u * i;
    kv[at] = pack2x16float(vec2<f32>(k_new[src], k_new[src + 1u]));
    kv[at + value_offset()] = pack2x16float(vec2<f32>(v_new[src], v_new[src + 1u]));
}
