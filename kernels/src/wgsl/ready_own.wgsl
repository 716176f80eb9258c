// The fused attention's `ready` (see attention.wgsl): the token's query head, normed and
// rotated, into q_head; its key head and value, encoded as the cache keeps them, into own_key
// and own_value, and
// stored in the token's slot by the group's first query head.
fn ready(t: u32, h: u32, g: u32, q0: u32, lid: u32) {
    ready_head(t, h, true, lid);
    for (var d = lid; d < p.head_dim; d += WG) {
        q_head[d] = head[d];
    }
    workgroupBarrier();
    ready_head(t, g, false, lid);
    let base = (t * p.kv_heads + g) * p.head_dim;
    let tok = tokens[t];
    let row = key_row(tok.y, tok.x) + g * head_words();
    let stores = h % (p.q_heads / p.kv_heads) == 0u;
    for (var w = lid; w < head_words(); w += WG) {
        own_key[w] = encode(w, 0u, false);
        own_value[w] = encode(w, base, true);
        if (stores) {
            kv[row + w] = own_key[w];
            kv[row + value_offset() + w] = own_value[w];
        }
    }
    workgroupBarrier();
}
