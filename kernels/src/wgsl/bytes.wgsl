// Reading a weight matrix's bytes, as the file stores them, from a word array: blocks of most
// formats are not 4-byte aligned (Q8_0's are 34 bytes), so values are picked out byte by byte.
// `w` is the matrix (or a slice of its rows) bound at binding 0 by the kernel that includes this.

fn byte_at(i: u32) -> u32 {
    return (w[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

fn u16_at(i: u32) -> u32 {
    return byte_at(i) | (byte_at(i + 1u) << 8u);
}

// Four bytes from any offset, the first in the low bits.
fn u32_at(i: u32) -> u32 {
    let s = (i & 3u) * 8u;
    if (s == 0u) {
        return w[i >> 2u];
    }
    return (w[i >> 2u] >> s) | (w[(i >> 2u) + 1u] << (32u - s));
}

fn f16_at(i: u32) -> f32 {
    return unpack2x16float(u16_at(i)).x;
}

// Four 4-bit values from bytes i..i+3 (low nibbles, or high ones when `high`).
fn nibbles_at(i: u32, high: bool) -> vec4<f32> {
    let v = u32_at(i) >> select(0u, 4u, high);
    return vec4<f32>(f32(v & 0xfu), f32((v >> 8u) & 0xfu), f32((v >> 16u) & 0xfu), f32((v >> 24u) & 0xfu));
}

// Bits j..j+3 of `bits`, one per lane.
fn bits4(bits: u32, j: u32) -> vec4<f32> {
    return vec4<f32>(f32((bits >> j) & 1u), f32((bits >> (j + 1u)) & 1u), f32((bits >> (j + 2u)) & 1u), f32((bits >> (j + 3u)) & 1u));
}
