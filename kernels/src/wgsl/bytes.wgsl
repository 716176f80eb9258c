// Reading a weight matrix's blocks from a word array. Blocks are stored as the file has them,
// padded so that every block and every field wider than a byte starts on a 4-byte boundary
// (`wgsl::repack`): values come out of whole words. `w` is the matrix (or a slice of its rows),
// bound at binding 0 by the kernel that includes this.

fn byte_at(i: u32) -> u32 {
    return (w[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

// The word at byte offset i (a multiple of 4).
fn word(i: u32) -> u32 {
    return w[i >> 2u];
}

// The two f16 values at byte offset i (a multiple of 4).
fn f16_pair(i: u32) -> vec2<f32> {
    return unpack2x16float(w[i >> 2u]);
}

// Four 4-bit values from the word at byte offset i (low nibbles, or high ones when `high`).
fn nibbles_at(i: u32, high: bool) -> vec4<f32> {
    let v = word(i) >> select(0u, 4u, high);
    return vec4<f32>(f32(v & 0xfu), f32((v >> 8u) & 0xfu), f32((v >> 16u) & 0xfu), f32((v >> 24u) & 0xfu));
}

// Bit j of each byte of `v`, one per lane (after shifting v right by j).
fn byte_bits(v: u32, j: u32, mask: u32) -> vec4<f32> {
    let s = v >> j;
    return vec4<f32>(f32(s & mask), f32((s >> 8u) & mask), f32((s >> 16u) & mask), f32((s >> 24u) & mask));
}

// Bits j..j+3 of `bits`, one per lane.
fn bits4(bits: u32, j: u32) -> vec4<f32> {
    return vec4<f32>(f32((bits >> j) & 1u), f32((bits >> (j + 1u)) & 1u), f32((bits >> (j + 2u)) & 1u), f32((bits >> (j + 3u)) & 1u));
}
