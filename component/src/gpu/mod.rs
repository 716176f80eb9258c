//! The GPU as the engine uses it: the operations of the `rill:gpu` WIT interface
//! (`wit/deps/gpu/gpu.wit`), behind a trait, so that the same GPU device runs on the
//! component's import (wasm32, `export.rs`) and natively on a host's own WebGPU implementation
//! (the native backend and the kernel tests).
//!
//! Resources are plain ids here; an implementation keeps the objects they name. Work is recorded
//! into one open pass by [`GpuApi::dispatch`] and sent by [`GpuApi::submit`]; writes made with
//! [`GpuApi::write_buffer`] land before the next submitted work.

use std::fmt;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
pub mod import;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufferId(pub u32);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PipelineId(pub u32);
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BindGroupId(pub u32);

/// Why a GPU call failed (the WIT's `gpu-error`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU device: {0}")]
    Unavailable(String),
    #[error("the GPU device was lost: {0}")]
    Lost(String),
    #[error("out of GPU memory: {0}")]
    OutOfMemory(String),
    #[error("invalid GPU call: {0}")]
    Validation(String),
}

/// The adapter behind a device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdapterInfo {
    pub vendor: String,
    pub architecture: String,
    pub device: String,
    pub description: String,
    /// A software rasteriser (lavapipe, SwiftShader): correct, slow.
    pub is_fallback_adapter: bool,
}

impl fmt::Display for AdapterInfo {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let name = if self.device.is_empty() {
            &self.description
        } else {
            &self.device
        };
        write!(f, "{name}")?;
        if self.is_fallback_adapter {
            write!(f, " (software)")?;
        }
        Ok(())
    }
}

/// The limits the kernels depend on (WebGPU's names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_size_x: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub min_storage_buffer_offset_alignment: u32,
    pub min_uniform_buffer_offset_alignment: u32,
}

/// A buffer range bound to one binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Binding {
    pub buffer: BufferId,
    pub offset: u64,
    pub size: u64,
}

pub trait GpuApi: Send + Sync {
    fn adapter_info(&self) -> AdapterInfo;
    /// WebGPU feature names: "shader-f16", "subgroups", "timestamp-query", ...
    fn features(&self) -> Vec<String>;
    fn limits(&self) -> Limits;
    /// A zeroed buffer of `size` bytes.
    fn create_buffer(&self, size: u64, label: &str) -> Result<BufferId, GpuError>;
    fn destroy_buffer(&self, buffer: BufferId);
    /// Compiles `code` once; `entry` names the `@compute` function.
    fn create_pipeline(&self, code: &str, entry: &str, label: &str) -> Result<PipelineId, GpuError>;
    /// Binds each `(binding, range)` of `entries` to `pipeline`'s group 0.
    fn create_bind_group(&self, pipeline: PipelineId, entries: &[(u32, Binding)]) -> Result<BindGroupId, GpuError>;
    fn destroy_bind_group(&self, group: BindGroupId);
    /// Writes `data` at `offset`, before any work submitted after this call.
    fn write_buffer(&self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<(), GpuError>;
    /// Records a dispatch of `pipeline` over `groups` workgroups into the open pass.
    fn dispatch(&self, pipeline: PipelineId, group: BindGroupId, groups: [u32; 3]);
    /// Sends the recorded work.
    fn submit(&self) -> Result<(), GpuError>;
    /// Waits for the submitted work, then returns `size` bytes of `buffer` from `offset`.
    fn read_buffer(&self, buffer: BufferId, offset: u64, size: u64) -> Result<Vec<u8>, GpuError>;
}
