//! [`GpuApi`] on the component's `rill:gpu` import: ids name the WIT resources, kept here until
//! the engine lets go of them.

use super::{AdapterInfo, BindGroupId, Binding, BufferId, GpuApi, GpuError, Limits, PipelineId};
use crate::export::rill::gpu::webgpu as wit;
use std::sync::{Mutex, MutexGuard};

/// Bytes a call copies across the boundary at most: wasmtime limits what one host call may
/// copy (a 185 MB weight slice in one `write-buffer` exhausts it).
const COPY_CHUNK: usize = 16 << 20;

/// Resources by id: a slot per id, reused once freed.
struct Table<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Table<T> {
    fn insert(&mut self, value: T) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(value);
                i as u32
            }
            None => {
                self.slots.push(Some(value));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn get(&self, id: u32) -> Result<&T, GpuError> {
        self.slots
            .get(id as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| GpuError::Validation(format!("unknown GPU resource {id}")))
    }

    fn remove(&mut self, id: u32) {
        if let Some(slot) = self.slots.get_mut(id as usize) {
            if slot.take().is_some() {
                self.free.push(id as usize);
            }
        }
    }
}

#[derive(Default)]
struct Resources {
    buffers: Table<wit::GpuBuffer>,
    pipelines: Table<wit::GpuComputePipeline>,
    groups: Table<wit::GpuBindGroup>,
    pass: Option<wit::GpuComputePass>,
    /// A failed dispatch (an unknown id), returned by the next submit.
    error: Option<GpuError>,
}

pub struct ImportedGpu {
    device: wit::GpuDevice,
    resources: Mutex<Resources>,
}

impl From<wit::GpuError> for GpuError {
    fn from(e: wit::GpuError) -> Self {
        match e {
            wit::GpuError::Unavailable(m) => GpuError::Unavailable(m),
            wit::GpuError::Lost(m) => GpuError::Lost(m),
            wit::GpuError::OutOfMemory(m) => GpuError::OutOfMemory(m),
            wit::GpuError::Validation(m) => GpuError::Validation(m),
        }
    }
}

impl ImportedGpu {
    /// The host's device for the engine; `Unavailable` when it has none for it.
    pub fn get() -> Result<ImportedGpu, GpuError> {
        Ok(ImportedGpu {
            device: wit::get_device()?,
            resources: Mutex::default(),
        })
    }

    fn resources(&self) -> MutexGuard<'_, Resources> {
        self.resources.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl GpuApi for ImportedGpu {
    fn adapter_info(&self) -> AdapterInfo {
        let i = self.device.adapter_info();
        AdapterInfo {
            vendor: i.vendor,
            architecture: i.architecture,
            device: i.device,
            description: i.description,
            is_fallback_adapter: i.is_fallback_adapter,
        }
    }

    fn features(&self) -> Vec<String> {
        self.device.features()
    }

    fn limits(&self) -> Limits {
        let l = self.device.limits();
        Limits {
            max_buffer_size: l.max_buffer_size,
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: l.max_compute_workgroup_size_x,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            min_storage_buffer_offset_alignment: l.min_storage_buffer_offset_alignment,
            min_uniform_buffer_offset_alignment: l.min_uniform_buffer_offset_alignment,
        }
    }

    fn create_buffer(&self, size: u64, label: &str) -> Result<BufferId, GpuError> {
        let b = self.device.create_buffer(size, label)?;
        Ok(BufferId(self.resources().buffers.insert(b)))
    }

    fn destroy_buffer(&self, buffer: BufferId) {
        self.resources().buffers.remove(buffer.0);
    }

    fn create_pipeline(&self, code: &str, entry: &str, label: &str) -> Result<PipelineId, GpuError> {
        let p = self.device.create_compute_pipeline(code, entry, label)?;
        Ok(PipelineId(self.resources().pipelines.insert(p)))
    }

    fn create_bind_group(&self, pipeline: PipelineId, entries: &[(u32, Binding)]) -> Result<BindGroupId, GpuError> {
        let mut r = self.resources();
        let group = {
            let entries = entries
                .iter()
                .map(|(binding, e)| {
                    Ok(wit::GpuBindGroupEntry {
                        binding: *binding,
                        buffer: r.buffers.get(e.buffer.0)?,
                        offset: e.offset,
                        size: e.size,
                    })
                })
                .collect::<Result<Vec<_>, GpuError>>()?;
            self.device.create_bind_group(r.pipelines.get(pipeline.0)?, &entries)?
        };
        Ok(BindGroupId(r.groups.insert(group)))
    }

    fn destroy_bind_group(&self, group: BindGroupId) {
        self.resources().groups.remove(group.0);
    }

    fn write_buffer(&self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<(), GpuError> {
        let r = self.resources();
        let b = r.buffers.get(buffer.0)?;
        for (i, chunk) in data.chunks(COPY_CHUNK).enumerate() {
            self.device.write_buffer(b, offset + (i * COPY_CHUNK) as u64, chunk)?;
        }
        Ok(())
    }

    fn dispatch(&self, pipeline: PipelineId, group: BindGroupId, groups: [u32; 3]) {
        let mut r = self.resources();
        let r = &mut *r;
        let pass = r.pass.get_or_insert_with(|| self.device.begin_compute_pass());
        match (r.pipelines.get(pipeline.0), r.groups.get(group.0)) {
            (Ok(p), Ok(g)) => pass.dispatch_workgroups(p, g, groups[0], groups[1], groups[2]),
            (Err(e), _) | (_, Err(e)) => {
                r.error.get_or_insert(e);
            }
        }
    }

    fn submit(&self) -> Result<(), GpuError> {
        let mut r = self.resources();
        if let Some(e) = r.error.take() {
            return Err(e);
        }
        match r.pass.take() {
            Some(pass) => Ok(self.device.submit(pass)?),
            None => Ok(()),
        }
    }

    fn read_buffer(&self, buffer: BufferId, offset: u64, size: u64) -> Result<Vec<u8>, GpuError> {
        self.submit()?;
        let r = self.resources();
        let b = r.buffers.get(buffer.0)?;
        let mut out = Vec::new();
        let mut at = 0;
        while at < size {
            let n = (size - at).min(COPY_CHUNK as u64);
            out.extend(b.read(offset + at, n)?);
            at += n;
        }
        Ok(out)
    }
}
