//! The host's GPU: `wgpu` (Vulkan on Linux; Metal, DX12 elsewhere) behind the engine's
//! [`GpuApi`], which the component reaches through the `rill:gpu` import (`wit.rs`) and the
//! native backend calls directly. A thin proxy: the kernels and what runs when are the engine's.
//!
//! Failures never panic: wgpu reports validation and out-of-memory errors to a handler and a
//! lost device to a callback; both are kept as the device's [`GpuError`] and returned by the
//! next `submit` or `read_buffer`, so the engine sees a typed error and the host can fall back.

mod profile;
pub mod wit;

use rill_engine::gpu::{AdapterInfo, BindGroupId, Binding, BufferId, GpuApi, GpuError, Limits, PipelineId};
use slab::Slab;
use std::sync::{Arc, Mutex, MutexGuard};

/// Which adapters may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterChoice {
    /// A hardware adapter (what `--backend auto` takes): never a software rasteriser.
    Hardware,
    /// The best adapter there is, a software one (lavapipe) included (`--backend gpu`).
    Any,
}

/// An adapter as `rill info` lists it.
pub struct AdapterReport {
    pub info: AdapterInfo,
    pub backend: String,
    pub features: Vec<String>,
    pub limits: Limits,
}

fn instance() -> wgpu::Instance {
    // WGPU_BACKEND etc. from the environment, as wgpu's own tools read them.
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn adapter_info(a: &wgpu::Adapter) -> AdapterInfo {
    let i = a.get_info();
    AdapterInfo {
        vendor: format!("{:#06x}", i.vendor),
        architecture: format!("{:?}", i.device_type),
        device: i.name,
        description: [i.driver, i.driver_info].join(" ").trim().to_string(),
        is_fallback_adapter: i.device_type == wgpu::DeviceType::Cpu,
    }
}

/// The features the engine's kernels can use, where the adapter has them.
const WANTED: [(wgpu::Features, &str); 3] = [
    (wgpu::Features::SHADER_F16, "shader-f16"),
    (wgpu::Features::SUBGROUP, "subgroups"),
    (wgpu::Features::TIMESTAMP_QUERY, "timestamp-query"),
];

fn feature_names(f: wgpu::Features) -> Vec<String> {
    WANTED
        .iter()
        .filter(|(w, _)| f.contains(*w))
        .map(|(_, n)| n.to_string())
        .collect()
}

fn limits(l: &wgpu::Limits) -> Limits {
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

/// Every adapter wgpu finds, best first (discrete, integrated, virtual, software).
fn ranked_adapters() -> Vec<wgpu::Adapter> {
    let mut all = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    all.sort_by_key(rank);
    all
}

/// The adapters this machine has, for `rill info`.
pub fn adapters() -> Vec<AdapterReport> {
    ranked_adapters()
        .iter()
        .map(|a| AdapterReport {
            info: adapter_info(a),
            backend: a.get_info().backend.to_string(),
            features: feature_names(a.features()),
            limits: limits(&a.limits()),
        })
        .collect()
}

/// A device on the best adapter `choice` allows.
pub fn open(choice: AdapterChoice) -> Result<WgpuDevice, GpuError> {
    let adapter = ranked_adapters()
        .into_iter()
        .find(|a| choice == AdapterChoice::Any || a.get_info().device_type != wgpu::DeviceType::Cpu)
        .ok_or_else(|| {
            GpuError::Unavailable(match choice {
                AdapterChoice::Hardware => {
                    "no hardware GPU adapter (a software one is used only when asked for: --backend gpu)".into()
                }
                AdapterChoice::Any => {
                    "no GPU adapter (on Linux: install a Vulkan driver, e.g. mesa-vulkan-drivers)".into()
                }
            })
        })?;
    WgpuDevice::new(adapter)
}

/// The objects the engine's ids name.
#[derive(Default)]
struct Objects {
    buffers: Slab<wgpu::Buffer>,
    /// Pipelines with their labels (the kernels' names, for the profile).
    pipelines: Slab<(wgpu::ComputePipeline, String)>,
    groups: Slab<wgpu::BindGroup>,
    /// The work being recorded, if any: its encoder and open pass (none while profiling: each
    /// dispatch is a pass of its own).
    pass: Option<(wgpu::CommandEncoder, Option<wgpu::ComputePass<'static>>)>,
}

pub struct WgpuDevice {
    info: AdapterInfo,
    features: Vec<String>,
    limits: Limits,
    device: wgpu::Device,
    queue: wgpu::Queue,
    objects: Mutex<Objects>,
    /// The first error the device reported outside a call that returns one (a lost device, a
    /// failed dispatch); every later call fails with it.
    fault: Arc<Mutex<Option<GpuError>>>,
    /// `RILL_GPU_PROFILE=1`: each dispatch timed on the device, reported when the device goes.
    profile: Option<Mutex<profile::Profile>>,
}

fn gpu_error(e: wgpu::Error) -> GpuError {
    match e {
        wgpu::Error::OutOfMemory { source } => GpuError::OutOfMemory(source.to_string()),
        wgpu::Error::Validation { description, .. } => GpuError::Validation(description),
        wgpu::Error::Internal { description, .. } => GpuError::Lost(description),
    }
}

impl WgpuDevice {
    fn new(adapter: wgpu::Adapter) -> Result<WgpuDevice, GpuError> {
        let wanted = WANTED.iter().fold(wgpu::Features::empty(), |f, (w, _)| f | *w) & adapter.features();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("rill"),
            required_features: wanted,
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| GpuError::Unavailable(format!("{}: {e}", adapter.get_info().name)))?;
        let fault = Arc::new(Mutex::new(None));
        let on_error = fault.clone();
        device.on_uncaptured_error(Arc::new(move |e| {
            let mut fault = on_error.lock().unwrap_or_else(|p| p.into_inner());
            fault.get_or_insert(gpu_error(e));
        }));
        let on_lost = fault.clone();
        device.set_device_lost_callback(move |reason, message| {
            let mut fault = on_lost.lock().unwrap_or_else(|p| p.into_inner());
            *fault = Some(GpuError::Lost(format!("{message} ({reason:?})")));
        });
        let profile = (std::env::var_os("RILL_GPU_PROFILE").is_some_and(|v| v == "1")
            && device.features().contains(wgpu::Features::TIMESTAMP_QUERY))
        .then(|| Mutex::new(profile::Profile::new(&device, &queue)));
        Ok(WgpuDevice {
            profile,
            info: adapter_info(&adapter),
            features: feature_names(device.features()),
            limits: limits(&device.limits()),
            device,
            queue,
            objects: Mutex::default(),
            fault,
        })
    }

    /// Loses the device on purpose, as a driver reset would (fault-injection tests).
    pub fn lose(&self) {
        self.device.destroy();
    }

    fn objects(&self) -> MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The device's recorded failure, if any.
    fn check(&self) -> Result<(), GpuError> {
        match self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs `f` in an error scope: an out-of-memory or validation error it causes is returned.
    fn scoped<T>(&self, f: impl FnOnce() -> T) -> Result<T, GpuError> {
        self.check()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let invalid = pollster::block_on(validation.pop());
        let out_of_memory = pollster::block_on(oom.pop());
        match out_of_memory.or(invalid) {
            Some(e) => Err(gpu_error(e)),
            None => self.check().map(|_| value),
        }
    }
}

impl GpuApi for WgpuDevice {
    fn adapter_info(&self) -> AdapterInfo {
        self.info.clone()
    }

    fn features(&self) -> Vec<String> {
        self.features.clone()
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn create_buffer(&self, size: u64, label: &str) -> Result<BufferId, GpuError> {
        if size > self.limits.max_buffer_size {
            return Err(GpuError::OutOfMemory(format!(
                "{label}: {size} bytes is more than the device's largest buffer ({} bytes)",
                self.limits.max_buffer_size
            )));
        }
        let buffer = self.scoped(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(4).next_multiple_of(4),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::UNIFORM
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        Ok(BufferId(self.objects().buffers.insert(buffer) as u32))
    }

    fn destroy_buffer(&self, buffer: BufferId) {
        if let Some(b) = self.objects().buffers.try_remove(buffer.0 as usize) {
            b.destroy();
        }
    }

    fn create_pipeline(&self, code: &str, entry: &str, label: &str) -> Result<PipelineId, GpuError> {
        let pipeline = self.scoped(|| {
            let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(code.into()),
            });
            self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        })?;
        Ok(PipelineId(
            self.objects().pipelines.insert((pipeline, label.to_string())) as u32,
        ))
    }

    fn create_bind_group(&self, pipeline: PipelineId, entries: &[(u32, Binding)]) -> Result<BindGroupId, GpuError> {
        let mut objects = self.objects();
        let o = &mut *objects;
        let unknown = || GpuError::Validation("a bind group names an unknown pipeline or buffer".into());
        let layout = o
            .pipelines
            .get(pipeline.0 as usize)
            .ok_or_else(unknown)?
            .0
            .get_bind_group_layout(0);
        let entries = entries
            .iter()
            .map(|(binding, b)| {
                Ok(wgpu::BindGroupEntry {
                    binding: *binding,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: o.buffers.get(b.buffer.0 as usize).ok_or_else(unknown)?,
                        offset: b.offset,
                        size: wgpu::BufferSize::new(b.size),
                    }),
                })
            })
            .collect::<Result<Vec<_>, GpuError>>()?;
        let group = self.scoped(|| {
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &layout,
                entries: &entries,
            })
        })?;
        Ok(BindGroupId(o.groups.insert(group) as u32))
    }

    fn destroy_bind_group(&self, group: BindGroupId) {
        self.objects().groups.try_remove(group.0 as usize);
    }

    fn write_buffer(&self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<(), GpuError> {
        self.check()?;
        let objects = self.objects();
        let b = objects
            .buffers
            .get(buffer.0 as usize)
            .ok_or_else(|| GpuError::Validation(format!("write to unknown buffer {}", buffer.0)))?;
        if offset + data.len() as u64 > b.size() || !offset.is_multiple_of(4) {
            return Err(GpuError::Validation(format!(
                "write of {} bytes at {offset} to a buffer of {}",
                data.len(),
                b.size()
            )));
        }
        // wgpu writes whole 4-byte words.
        if data.len().is_multiple_of(4) {
            self.queue.write_buffer(b, offset, data);
        } else {
            let mut padded = data.to_vec();
            padded.resize(data.len().next_multiple_of(4), 0);
            self.queue.write_buffer(b, offset, &padded);
        }
        Ok(())
    }

    fn dispatch(&self, pipeline: PipelineId, group: BindGroupId, groups: [u32; 3]) {
        let mut objects = self.objects();
        let o = &mut *objects;
        let (Some(p), Some(g)) = (o.pipelines.get(pipeline.0 as usize), o.groups.get(group.0 as usize)) else {
            let mut fault = self.fault.lock().unwrap_or_else(|p| p.into_inner());
            fault.get_or_insert(GpuError::Validation(
                "a dispatch names an unknown pipeline or bind group".into(),
            ));
            return;
        };
        if let Some(profile) = &self.profile {
            // A pass of its own, with timestamps at its start and end.
            let (encoder, _) = o
                .pass
                .get_or_insert_with(|| (self.device.create_command_encoder(&Default::default()), None));
            let mut profile = profile.lock().unwrap_or_else(|p| p.into_inner());
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: profile.writes(&p.1),
            });
            pass.set_pipeline(&p.0);
            pass.set_bind_group(0, g, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
            return;
        }
        let (_, pass) = o.pass.get_or_insert_with(|| {
            let mut encoder = self.device.create_command_encoder(&Default::default());
            let pass = encoder.begin_compute_pass(&Default::default()).forget_lifetime();
            (encoder, Some(pass))
        });
        let pass = pass.as_mut().expect("an open pass when not profiling");
        pass.set_pipeline(&p.0);
        pass.set_bind_group(0, g, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }

    fn submit(&self) -> Result<(), GpuError> {
        let pass = self.objects().pass.take();
        if let Some((mut encoder, pass)) = pass {
            drop(pass);
            match &self.profile {
                Some(profile) => {
                    let mut profile = profile.lock().unwrap_or_else(|p| p.into_inner());
                    profile.resolve(&mut encoder);
                    self.queue.submit([encoder.finish()]);
                    profile.collect(&self.device);
                }
                None => {
                    self.queue.submit([encoder.finish()]);
                }
            }
        }
        self.check()
    }

    fn read_buffer(&self, buffer: BufferId, offset: u64, size: u64) -> Result<Vec<u8>, GpuError> {
        self.submit()?;
        let padded = size.next_multiple_of(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: padded.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let objects = self.objects();
            let b = objects
                .buffers
                .get(buffer.0 as usize)
                .ok_or_else(|| GpuError::Validation(format!("read of unknown buffer {}", buffer.0)))?;
            if !offset.is_multiple_of(4) || offset + padded > b.size() {
                return Err(GpuError::Validation(format!(
                    "read of {size} bytes at {offset} from a buffer of {}",
                    b.size()
                )));
            }
            let mut encoder = self.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(b, offset, &staging, 0, padded);
            self.queue.submit([encoder.finish()]);
        }
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
        let waited = self.device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: None,
        });
        self.check()?;
        waited.map_err(|e| GpuError::Lost(e.to_string()))?;
        match receiver.try_recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GpuError::Lost(e.to_string())),
            Err(_) => return Err(GpuError::Lost("the read-back never completed".into())),
        }
        let bytes = staging
            .slice(..size)
            .get_mapped_range()
            .map_err(|e| GpuError::Lost(e.to_string()))?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }
}
