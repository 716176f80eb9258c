// A sum over a workgroup of 256 invocations (a tree in workgroup memory), shared by the kernels
// that norm a row or add up a run.

var<workgroup> sums: array<f32, 256>;

// Σ of `v` over the workgroup, in every invocation; `sums` is free again when it returns.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    sums[lid] = v;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step /= 2u) {
        if (lid < step) {
            sums[lid] += sums[lid + step];
        }
        workgroupBarrier();
    }
    let total = sums[0];
    workgroupBarrier();
    return total;
}
