// Readies the step's new queries and keys for attention (head_input.wgsl, after kv_pages.wgsl)
// and stores keys and values: per (token, head), the query written back, or the key and the
// value rows written into the token's KV slot in the cache's format.

@compute @workgroup_size(256)
fn attention_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wg.x;
    let is_query = wg.y < p.q_heads;
    let h = select(wg.y - p.q_heads, wg.y, is_query);
    let hd = p.head_dim;
    let base = select((t * p.kv_heads + h) * hd, (t * p.q_heads + h) * hd, is_query);
    ready_head(t, h, is_query, lid);
    if (is_query) {
        for (var d = lid; d < hd; d += 256u) {
            q[base + d] = head[d];
        }
        return;
    }
    let tok = tokens[t];
    let row = key_row(tok.y, tok.x) + h * head_words();
    for (var w = lid; w < head_words(); w += 256u) {
        kv[row + w] = encode(w, 0u, false);
        kv[row + value_offset() + w] = encode(w, base, true);
    }
}
