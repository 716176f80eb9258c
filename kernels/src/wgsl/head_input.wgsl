// A new token's query or key head made ready for attention (after kv_pages.wgsl and
// workgroup_sum.wgsl): its RMS
// norm (where the model has per-head norms: `head_norm` reads them, query heads' then key
// heads'), then its rotation to the token's position (NeoX pairs: value i with i + half, from a
// table of cos and sin made on the CPU, where sin and cos of large angles are exact).

@group(0) @binding(4) var<storage, read_write> q: array<f32>;
@group(0) @binding(5) var<storage, read> k: array<f32>;
@group(0) @binding(6) var<storage, read> v: array<f32>;
// (n, half) cos and sin pairs, already times the magnitude scale.
@group(0) @binding(7) var<storage, read> cos_sin: array<vec2<f32>>;

var<workgroup> head: array<f32, 512>;

// Value i of what is stored: the readied key head (`head`), or a value head (v from `base`).
fn source(i: u32, base: u32, is_value: bool) -> f32 {
    if (is_value) {
        return v[base + i];
    }
    return head[i];
}

// Fills `head` with head `h` of token `t`'s query (is_query) or key, normed and rotated.
fn ready_head(t: u32, h: u32, is_query: bool, lid: u32) {
    let hd = p.head_dim;
    let half = hd / 2u;
    let base = select((t * p.kv_heads + h) * hd, (t * p.q_heads + h) * hd, is_query);
    var s = 0.0;
    for (var d = lid; d < hd; d += 256u) {
        let value = select(k[base + d], q[base + d], is_query);
        head[d] = value;
        s += value * value;
    }
    let scale = select(1.0, inverseSqrt(workgroup_sum(lid, s) / f32(hd) + p.eps), HEAD_NORMS);
    var rotated: array<vec2<f32>, 2>; // pairs (f, f + half) of this invocation, f = lid, lid + 256
    for (var j = 0u; j < 2u; j++) {
        let f = lid + 256u * j;
        if (f < half) {
            let norm_at = select(hd, 0u, is_query);
            let a = head[f] * scale * head_norm(norm_at + f);
            let b = head[f + half] * scale * head_norm(norm_at + f + half);
            let cs = cos_sin[t * half + f];
            rotated[j] = vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
        }
    }
    workgroupBarrier();
    for (var j = 0u; j < 2u; j++) {
        let f = lid + 256u * j;
        if (f < half) {
            head[f] = rotated[j].x;
            head[f + half] = rotated[j].y;
        }
    }
    workgroupBarrier();
}
