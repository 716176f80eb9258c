// The paged KV cache on the device, shared by `attention_input` and `attention`. Keys and
// values are rows of their format (kv/, before this: `head_words` and the coders) in a pool of
// slots, one slot per block of BLOCK positions of a sequence, holding the part's layers: keys
// (layer, position in block, kv_heads × head_words), then values alike. A layer's slots are all in one pool
// (global layers' or sliding ones'); each sequence's block table names its slot per block.

struct Params {
    n: u32,            // tokens in the step
    kv_dim: u32,
    head_dim: u32,
    q_heads: u32,
    kv_heads: u32,
    layers: u32,       // layers in this pool's part
    index: u32,        // this layer's index among them
    column: u32,       // which slot of a block table entry: 0 global, 1 sliding
    window: u32,       // positions a token sees, itself included (0: all)
    scale: f32,        // of the attention scores
    eps: f32,          // of the per-head norms
}

const BLOCK: u32 = 32u;

// Per token of the step: its position, and where its sequence's block table starts.
@group(0) @binding(0) var<storage, read> tokens: array<vec2<u32>>;
// Per sequence and block: (global slot, sliding slot).
@group(0) @binding(1) var<storage, read> tables: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> kv: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

// The word where position `pos`'s key row starts, for a sequence whose table starts at `table`.
fn key_row(table: u32, pos: u32) -> u32 {
    let slot = tables[table + pos / BLOCK][p.column];
    let row_words = p.kv_heads * head_words();
    return slot * (2u * p.layers * BLOCK * row_words) + (p.index * BLOCK + pos % BLOCK) * row_words;
}

// The value row is a part's keys further on.
fn value_offset() -> u32 {
    return p.layers * BLOCK * p.kv_heads * head_words();
}
