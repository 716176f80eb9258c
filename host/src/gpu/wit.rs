//! `rill:gpu` for the engine component: each WIT call forwarded to the host's [`WgpuDevice`]
//! through the engine's own [`GpuApi`], resources kept in the store's table as the ids it returns.

use super::WgpuDevice;
use crate::backend::component::bindings::rill::gpu::webgpu as wit;
use rill_engine::gpu::{BindGroupId, Binding, BufferId, GpuApi, GpuError, PipelineId};
use std::sync::Arc;
use wasmtime::component::{HasData, Resource, ResourceTable};

/// The device resource: the host has one device per store.
pub struct DeviceHandle;
/// A pass being recorded (the device records into one open pass).
pub struct PassHandle;

/// What the `rill:gpu` calls of one store see: its device (or why it has none) and its table.
pub struct GpuHost<'a> {
    pub device: &'a Result<Arc<WgpuDevice>, GpuError>,
    pub table: &'a mut ResourceTable,
}

/// Marks [`GpuHost`] as the data the generated `add_to_linker` hands to the calls.
pub struct HasGpu;

impl HasData for HasGpu {
    type Data<'a> = GpuHost<'a>;
}

impl From<GpuError> for wit::GpuError {
    fn from(e: GpuError) -> Self {
        match e {
            GpuError::Unavailable(m) => wit::GpuError::Unavailable(m),
            GpuError::Lost(m) => wit::GpuError::Lost(m),
            GpuError::OutOfMemory(m) => wit::GpuError::OutOfMemory(m),
            GpuError::Validation(m) => wit::GpuError::Validation(m),
        }
    }
}

impl GpuHost<'_> {
    /// The device; a call on a device resource means `get-device` gave it, so it exists.
    fn gpu(&self) -> wasmtime::Result<&WgpuDevice> {
        self.device
            .as_deref()
            .map_err(|e| wasmtime::format_err!("rill:gpu call without a device: {e}"))
    }

    fn id<T: Copy + 'static>(&self, r: &Resource<T>) -> wasmtime::Result<T> {
        Ok(*self.table.get(r)?)
    }
}

type Wit<T> = wasmtime::Result<Result<T, wit::GpuError>>;

impl wit::Host for GpuHost<'_> {
    fn get_device(&mut self) -> Wit<Resource<DeviceHandle>> {
        match self.device {
            Ok(_) => Ok(Ok(self.table.push(DeviceHandle)?)),
            Err(e) => Ok(Err(e.clone().into())),
        }
    }
}

impl wit::HostGpuDevice for GpuHost<'_> {
    fn adapter_info(&mut self, _: Resource<DeviceHandle>) -> wasmtime::Result<wit::GpuAdapterInfo> {
        let i = self.gpu()?.adapter_info();
        Ok(wit::GpuAdapterInfo {
            vendor: i.vendor,
            architecture: i.architecture,
            device: i.device,
            description: i.description,
            is_fallback_adapter: i.is_fallback_adapter,
        })
    }

    fn features(&mut self, _: Resource<DeviceHandle>) -> wasmtime::Result<Vec<String>> {
        Ok(self.gpu()?.features())
    }

    fn limits(&mut self, _: Resource<DeviceHandle>) -> wasmtime::Result<wit::GpuSupportedLimits> {
        let l = self.gpu()?.limits();
        Ok(wit::GpuSupportedLimits {
            max_buffer_size: l.max_buffer_size,
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: l.max_compute_workgroup_size_x,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            min_storage_buffer_offset_alignment: l.min_storage_buffer_offset_alignment,
            min_uniform_buffer_offset_alignment: l.min_uniform_buffer_offset_alignment,
        })
    }

    fn create_buffer(&mut self, _: Resource<DeviceHandle>, size: u64, label: String) -> Wit<Resource<BufferId>> {
        Ok(match self.gpu()?.create_buffer(size, &label) {
            Ok(id) => Ok(self.table.push(id)?),
            Err(e) => Err(e.into()),
        })
    }

    fn create_compute_pipeline(
        &mut self,
        _: Resource<DeviceHandle>,
        code: String,
        entry_point: String,
        label: String,
    ) -> Wit<Resource<PipelineId>> {
        Ok(match self.gpu()?.create_pipeline(&code, &entry_point, &label) {
            Ok(id) => Ok(self.table.push(id)?),
            Err(e) => Err(e.into()),
        })
    }

    fn create_bind_group(
        &mut self,
        _: Resource<DeviceHandle>,
        pipeline: Resource<PipelineId>,
        entries: Vec<wit::GpuBindGroupEntry>,
    ) -> Wit<Resource<BindGroupId>> {
        let pipeline = self.id(&pipeline)?;
        let entries = entries
            .iter()
            .map(|e| {
                let range = Binding {
                    buffer: self.id(&e.buffer)?,
                    offset: e.offset,
                    size: e.size,
                };
                Ok((e.binding, range))
            })
            .collect::<wasmtime::Result<Vec<_>>>()?;
        Ok(match self.gpu()?.create_bind_group(pipeline, &entries) {
            Ok(id) => Ok(self.table.push(id)?),
            Err(e) => Err(e.into()),
        })
    }

    fn write_buffer(
        &mut self,
        _: Resource<DeviceHandle>,
        buffer: Resource<BufferId>,
        offset: u64,
        data: Vec<u8>,
    ) -> Wit<()> {
        let buffer = self.id(&buffer)?;
        Ok(self.gpu()?.write_buffer(buffer, offset, &data).map_err(Into::into))
    }

    fn begin_compute_pass(&mut self, _: Resource<DeviceHandle>) -> wasmtime::Result<Resource<PassHandle>> {
        Ok(self.table.push(PassHandle)?)
    }

    fn submit(&mut self, _: Resource<DeviceHandle>, pass: Resource<PassHandle>) -> Wit<()> {
        self.table.delete(pass)?;
        Ok(self.gpu()?.submit().map_err(Into::into))
    }

    fn drop(&mut self, device: Resource<DeviceHandle>) -> wasmtime::Result<()> {
        self.table.delete(device)?;
        Ok(())
    }
}

impl wit::HostGpuBuffer for GpuHost<'_> {
    fn read(&mut self, buffer: Resource<BufferId>, offset: u64, size: u64) -> Wit<Vec<u8>> {
        let buffer = self.id(&buffer)?;
        Ok(self.gpu()?.read_buffer(buffer, offset, size).map_err(Into::into))
    }

    fn drop(&mut self, buffer: Resource<BufferId>) -> wasmtime::Result<()> {
        let id = self.table.delete(buffer)?;
        if let Ok(gpu) = self.device {
            gpu.destroy_buffer(id);
        }
        Ok(())
    }
}

impl wit::HostGpuComputePipeline for GpuHost<'_> {
    fn drop(&mut self, pipeline: Resource<PipelineId>) -> wasmtime::Result<()> {
        self.table.delete(pipeline)?;
        Ok(())
    }
}

impl wit::HostGpuBindGroup for GpuHost<'_> {
    fn drop(&mut self, group: Resource<BindGroupId>) -> wasmtime::Result<()> {
        let id = self.table.delete(group)?;
        if let Ok(gpu) = self.device {
            gpu.destroy_bind_group(id);
        }
        Ok(())
    }
}

impl wit::HostGpuComputePass for GpuHost<'_> {
    fn dispatch_workgroups(
        &mut self,
        _: Resource<PassHandle>,
        pipeline: Resource<PipelineId>,
        bind_group: Resource<BindGroupId>,
        x: u32,
        y: u32,
        z: u32,
    ) -> wasmtime::Result<()> {
        let (p, g) = (self.id(&pipeline)?, self.id(&bind_group)?);
        self.gpu()?.dispatch(p, g, [x, y, z]);
        Ok(())
    }

    fn drop(&mut self, pass: Resource<PassHandle>) -> wasmtime::Result<()> {
        self.table.delete(pass)?;
        Ok(())
    }
}
