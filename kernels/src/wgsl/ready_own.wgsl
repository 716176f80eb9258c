// The fused attention's `ready` (see attention.wgsl): the token's query head, normed and
// rotated, into q_head; its key head and value, as f16 pairs, into own_key and own_value, and
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
    let row = key_row(tok.y, tok.x) + g * p.head_dim / 2u;
    let stores = h % (p.q_heads / p.kv_heads) == 0u;
    for (var i = lid; i < p.head_dim / 2u; i += WG) {
        own_key[i] = pack2x16float(vec2<f32>(head[2u * i], head[2u * i + 1u]));
        own_value[i] = pack2x16float(vec2<f32>(v[base + 2u * i], v[base + 2u * i + 1u]));
        if (stores) {
            kv[row + i] = own_key[i];
            kv[row + value_offset() + i] = own_value[i];
        }
    }
    workgroupBarrier();
}
