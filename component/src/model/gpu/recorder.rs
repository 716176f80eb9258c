//! Recording one step's work: each dispatch's small parameters and per-step arrays (token ids,
//! positions, block tables) go into one upload arena, written once just before the step is
//! submitted; bind groups are made once per distinct set of buffers and kept, so a decode step
//! like the last one creates nothing. A failure while recording is kept and returned by
//! [`Recorder::submit`] (WebGPU reports errors the same way).

use crate::gpu::{BindGroupId, Binding, BufferId, GpuApi, GpuError, PipelineId};
use std::collections::HashMap;

/// What a kernel's binding is given.
#[derive(Clone, Copy)]
pub enum Bind<'a> {
    /// A whole buffer.
    Buffer(BufferId),
    /// Bytes uploaded for this step (uniform parameters, small arrays).
    Upload(&'a [u8]),
    /// A range uploaded earlier in this step.
    Uploaded(Binding),
    /// Nothing: this binding number is not one of the kernel's.
    Skip,
}

/// Bind groups beyond this many are dropped and made again (distinct prompt lengths each make
/// a few).
const MAX_GROUPS: usize = 4096;

pub struct Recorder {
    /// The step's uploads, at `align`-ed offsets of the arena buffer.
    bytes: Vec<u8>,
    arena: Option<(BufferId, u64)>,
    /// Arenas outgrown during this step, freed once it is submitted.
    retired: Vec<BufferId>,
    align: u64,
    groups: HashMap<(PipelineId, Vec<(u32, Binding)>), BindGroupId>,
    /// Buffers' sizes, by id (bindings of whole buffers).
    sizes: HashMap<BufferId, u64>,
    error: Option<GpuError>,
}

impl Recorder {
    pub fn new(align: u64) -> Recorder {
        Recorder {
            bytes: Vec::new(),
            arena: None,
            retired: Vec::new(),
            align: align.max(16),
            groups: HashMap::new(),
            sizes: HashMap::new(),
            error: None,
        }
    }

    /// Keeps the first failure of the step.
    pub fn fail(&mut self, e: GpuError) {
        self.error.get_or_insert(e);
    }

    pub fn create_buffer(&mut self, api: &dyn GpuApi, size: u64, label: &str) -> Result<BufferId, GpuError> {
        let id = api.create_buffer(size, label)?;
        self.sizes.insert(id, size);
        Ok(id)
    }

    /// Frees `buffer`, and every bind group (ids of freed buffers are reused).
    pub fn destroy_buffer(&mut self, api: &dyn GpuApi, buffer: BufferId) {
        self.sizes.remove(&buffer);
        self.forget_groups(api);
        api.destroy_buffer(buffer);
    }

    fn forget_groups(&mut self, api: &dyn GpuApi) {
        for (_, g) in self.groups.drain() {
            api.destroy_bind_group(g);
        }
    }

    /// Places `data` in the step's arena, growing it (into a new buffer) when it is full.
    pub fn upload(&mut self, api: &dyn GpuApi, data: &[u8]) -> Result<Binding, GpuError> {
        let len = (data.len() as u64).max(4).next_multiple_of(16);
        let mut at = (self.bytes.len() as u64).next_multiple_of(self.align);
        let capacity = self.arena.map_or(0, |(_, c)| c);
        if at + len > capacity {
            // Earlier dispatches of this step read the old arena: it gets its bytes now and lives
            // until the step is submitted.
            if let Some((old, _)) = self.arena.take() {
                api.write_buffer(old, 0, &self.bytes)?;
                self.retired.push(old);
            }
            self.forget_groups(api);
            let size = (2 * capacity).max(len).max(1 << 20);
            self.arena = Some((api.create_buffer(size, "uploads")?, size));
            self.bytes.clear();
            at = 0;
        }
        self.bytes.resize(at as usize, 0);
        self.bytes.extend_from_slice(data);
        self.bytes.resize((at + len) as usize, 0);
        Ok(Binding {
            buffer: self.arena.expect("made above").0,
            offset: at,
            size: len,
        })
    }

    /// Records `pipeline` over `groups` workgroups with `binds` at bindings 0, 1, ... (those
    /// that are not [`Bind::Skip`]).
    pub fn dispatch(&mut self, api: &dyn GpuApi, pipeline: PipelineId, binds: &[Bind], groups: [u32; 3]) {
        if let Err(e) = self.try_dispatch(api, pipeline, binds, groups) {
            self.fail(e);
        }
    }

    fn try_dispatch(
        &mut self,
        api: &dyn GpuApi,
        pipeline: PipelineId,
        binds: &[Bind],
        groups: [u32; 3],
    ) -> Result<(), GpuError> {
        let mut bindings = Vec::with_capacity(binds.len());
        for (i, b) in binds.iter().enumerate() {
            let range = match *b {
                Bind::Buffer(buffer) => Binding {
                    buffer,
                    offset: 0,
                    size: self.sizes[&buffer],
                },
                Bind::Upload(data) => self.upload(api, data)?,
                Bind::Uploaded(binding) => binding,
                Bind::Skip => continue,
            };
            bindings.push((i as u32, range));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        if self.groups.len() >= MAX_GROUPS {
            self.forget_groups(api);
        }
        let key = (pipeline, bindings);
        let group = match self.groups.get(&key) {
            Some(&g) => g,
            None => {
                let g = api.create_bind_group(pipeline, &key.1)?;
                self.groups.insert(key, g);
                g
            }
        };
        api.dispatch(pipeline, group, groups);
        Ok(())
    }

    /// Writes the step's uploads and sends its work; the step's first failure, if any.
    pub fn submit(&mut self, api: &dyn GpuApi) -> Result<(), GpuError> {
        let written = match (self.error.take(), self.arena) {
            (Some(e), _) => Err(e),
            (None, Some((arena, _))) if !self.bytes.is_empty() => api.write_buffer(arena, 0, &self.bytes),
            (None, _) => Ok(()),
        };
        self.bytes.clear();
        let submitted = written.and_then(|_| api.submit());
        for old in self.retired.drain(..) {
            api.destroy_buffer(old);
        }
        submitted
    }
}
