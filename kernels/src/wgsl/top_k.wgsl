// The TOP most likely tokens of each row of logits, with the row's log-sum-exp, so that a step
// reads back a few hundred bytes per sequence instead of its whole row (1 MiB for a vocabulary
// of 262,144). In passes: `top_k_logits` cuts each row into runs of RUN logits and keeps each
// run's TOP best; `top_k_merge` then takes MERGE runs' candidates at a time (RUN of them) and
// keeps their TOP best, until one run per row is left. Each workgroup sorts its RUN (value, id)
// pairs in workgroup memory (bitonic), most likely first, ties by the lower id (the CPU
// sampler's order). Beside each run's candidates: (max, Σ exp(l - max)) of all its logits.

struct Params {
    len: u32,      // values (first pass) or runs (merges) per input row
    runs_out: u32, // runs per output row
}

const RUN: u32 = 1024u;
const TOP: u32 = 64u;
const MERGE: u32 = RUN / TOP;
const WG: u32 = 256u;
// Below every logit, and finite, so that exp(NONE - NONE) stays 1 rather than NaN.
const NONE: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> top_out: array<vec2<u32>>;  // (rows, runs_out, TOP) (value bits, id)
@group(0) @binding(2) var<storage, read_write> lse_out: array<vec2<f32>>;  // (rows, runs_out) (max, sum)

var<workgroup> values: array<f32, RUN>;
var<workgroup> ids: array<u32, RUN>;

// Whether pair a comes before pair b: more likely, or as likely with the lower id.
fn before(a: u32, b: u32) -> bool {
    return values[a] > values[b] || (values[a] == values[b] && ids[a] < ids[b]);
}

// Sorts the workgroup's RUN pairs, most likely first.
fn sort(lid: u32) {
    for (var k = 2u; k <= RUN; k *= 2u) {
        for (var j = k / 2u; j > 0u; j /= 2u) {
            for (var i = lid; i < RUN; i += WG) {
                let l = i ^ j;
                if (l > i) {
                    // Runs of k alternate direction, so that each k-run becomes one sorted run.
                    let first_wins = (i & k) == 0u;
                    if (before(l, i) == first_wins) {
                        let v = values[i];
                        values[i] = values[l];
                        values[l] = v;
                        let d = ids[i];
                        ids[i] = ids[l];
                        ids[l] = d;
                    }
                }
            }
            workgroupBarrier();
        }
    }
}

// Writes the sorted run's first TOP pairs and its (max, sum) as output run `run` of `row`.
fn store(row: u32, run: u32, lid: u32, sum: f32) {
    let out = row * p.runs_out + run;
    if (lid < TOP) {
        top_out[out * TOP + lid] = vec2<u32>(bitcast<u32>(values[lid]), ids[lid]);
    }
    if (lid == 0u) {
        lse_out[out] = vec2<f32>(values[0], sum);
    }
}

@group(0) @binding(3) var<storage, read> logits: array<f32>;             // (rows, len)
@group(0) @binding(4) var<storage, read> top_in: array<vec2<u32>>;       // (rows, len, TOP)
@group(0) @binding(5) var<storage, read> lse_in: array<vec2<f32>>;       // (rows, len)

// Workgroup (run, row): logits run·RUN … of the row.
@compute @workgroup_size(256)
fn top_k_logits(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let run = wg.x;
    let row = wg.y;
    for (var i = lid; i < RUN; i += WG) {
        let at = run * RUN + i;
        values[i] = select(NONE, logits[row * p.len + at], at < p.len);
        ids[i] = at;
    }
    workgroupBarrier();
    sort(lid);
    var s = 0.0; // padding adds exp(NONE - max) = 0
    for (var i = lid; i < RUN; i += WG) {
        s += exp(values[i] - values[0]);
    }
    store(row, run, lid, workgroup_sum(lid, s));
}

// Workgroup (run, row): the candidates of input runs run·MERGE … of the row.
@compute @workgroup_size(256)
fn top_k_merge(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let run = wg.x;
    let row = wg.y;
    for (var i = lid; i < RUN; i += WG) {
        let child = run * MERGE + i / TOP;
        var pair = vec2<u32>(bitcast<u32>(NONE), 0xffffffffu);
        if (child < p.len) {
            pair = top_in[(row * p.len + child) * TOP + i % TOP];
        }
        values[i] = bitcast<f32>(pair.x);
        ids[i] = pair.y;
    }
    workgroupBarrier();
    sort(lid);
    // Each input run's maximum is its first candidate, so the merged maximum is values[0].
    var s = 0.0;
    if (lid < MERGE && run * MERGE + lid < p.len) {
        let part = lse_in[row * p.len + run * MERGE + lid];
        s = part.y * exp(part.x - values[0]);
    }
    store(row, run, lid, workgroup_sum(lid, s));
}
