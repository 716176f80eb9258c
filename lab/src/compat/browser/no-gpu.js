// rill:gpu for a page that gives the engine no GPU: `get-device` says so, and the engine runs
// on the CPU (Wasm SIMD). The resource classes exist only because the transpiled component
// imports them.
export function getDevice() {
  throw { payload: { tag: "unavailable", val: "this page gives the engine no GPU" } };
}
export class GpuDevice {}
export class GpuBuffer {}
export class GpuComputePipeline {}
export class GpuBindGroup {}
export class GpuComputePass {}
