// y (n, rows) = x (n, cols) · wᵀ for a weight matrix in any format (its `dequant`, included
// before this, turns 32 values of a row into f32). Decode (n = 1) and prompts alike: a
// workgroup takes 8 rows and up to 8 tokens; each of a row's 32 lanes walks every 32nd chunk of
// 32 values, dequantises it once and multiplies it into all the tokens' sums, which the lanes
// then add up in workgroup memory. A matrix split into row slices (larger than one binding may
// be) runs once per slice, `row0` placing its rows in y.

struct Params {
    rows: u32,      // rows of this slice
    cols: u32,
    n: u32,         // tokens
    row_bytes: u32,
    row0: u32,      // the slice's first row in the whole matrix
    y_stride: u32,  // rows of the whole matrix (y's row length)
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const LANES: u32 = 32u;
const TOKENS: u32 = 8u;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wg.x * 8u + lid / LANES;
    let lane = lid % LANES;
    let t0 = wg.y * TOKENS;
    let tokens = min(TOKENS, p.n - t0);
    let chunks = p.cols / 32u;
    var acc: array<f32, 8>;
    if (r < p.rows) {
        let row = r * p.row_bytes;
        for (var c = lane; c < chunks; c += LANES) {
            let v = dequant(row, c);
            for (var t = 0u; t < tokens; t++) {
                let xo = ((t0 + t) * p.cols + c * 32u) / 4u;
                var s = 0.0;
                for (var i = 0u; i < 8u; i++) {
                    s += dot(v[i], x[xo + i]);
                }
                acc[t] += s;
            }
        }
    }
    for (var t = 0u; t < tokens; t++) {
        partial[lid] = acc[t];
        workgroupBarrier();
        for (var step = LANES / 2u; step > 0u; step /= 2u) {
            if (lane < step) {
                partial[lid] += partial[lid + step];
            }
            workgroupBarrier();
        }
        if (lane == 0u && r < p.rows) {
            y[(t0 + t) * p.y_stride + p.row0 + r] = partial[lid];
        }
        workgroupBarrier();
    }
}
