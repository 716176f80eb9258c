//! `RILL_GPU_PROFILE=1`: the device time of every kernel, from timestamp queries written at the
//! start and end of each dispatch (each in a pass of its own, so the step itself runs slower;
//! the kernels' times are their own). Totals per kernel are printed when the device is dropped.

use std::collections::BTreeMap;

/// Dispatches timed per submission at most; more are left untimed.
const CAPACITY: u32 = 2048;

pub struct Profile {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period: f64,
    /// The kernels timed in the pending submission, in query order.
    pending: Vec<String>,
    /// Per kernel: (total ns, dispatches).
    totals: BTreeMap<String, (f64, u64)>,
    steps: u64,
}

impl Profile {
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Profile {
        let bytes = 2 * CAPACITY as u64 * 8;
        Profile {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * CAPACITY,
            }),
            resolved: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile resolved"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            period: queue.get_timestamp_period() as f64,
            pending: Vec::new(),
            totals: BTreeMap::new(),
            steps: 0,
        }
    }

    /// Timestamp writes for the next dispatch, of kernel `label` (none once full).
    pub fn writes(&mut self, label: &str) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let i = self.pending.len() as u32;
        if i >= CAPACITY {
            return None;
        }
        self.pending.push(label.to_string());
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        })
    }

    /// Copies the submission's timestamps to where they can be read.
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        let n = 2 * self.pending.len() as u32;
        if n > 0 {
            encoder.resolve_query_set(&self.queries, 0..n, &self.resolved, 0);
            encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.readback, 0, n as u64 * 8);
        }
    }

    /// After the submission: adds its kernels' times to the totals.
    pub fn collect(&mut self, device: &wgpu::Device) {
        if self.pending.is_empty() {
            return;
        }
        let slice = self.readback.slice(..2 * self.pending.len() as u64 * 8);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        let _ = device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: None,
        });
        if let Ok(view) = slice.get_mapped_range() {
            let ticks: &[u64] = bytemuck::cast_slice(&view);
            for (label, t) in self.pending.iter().zip(ticks.chunks_exact(2)) {
                let entry = self.totals.entry(label.clone()).or_default();
                entry.0 += t[1].saturating_sub(t[0]) as f64 * self.period;
                entry.1 += 1;
            }
        }
        self.readback.unmap();
        self.pending.clear();
        self.steps += 1;
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let total: f64 = self.totals.values().map(|t| t.0).sum();
        eprintln!(
            "rill: GPU profile over {} submissions ({:.3} ms of kernels in all)",
            self.steps,
            total / 1e6
        );
        eprintln!(
            "  {:<20} {:>10} {:>12} {:>10} {:>7}",
            "kernel", "dispatches", "total ms", "mean µs", "share"
        );
        let mut rows: Vec<_> = self.totals.iter().collect();
        rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
        for (label, (ns, count)) in rows {
            eprintln!(
                "  {label:<20} {count:>10} {:>12.3} {:>10.2} {:>6.1}%",
                ns / 1e6,
                ns / 1e3 / *count as f64,
                100.0 * ns / total.max(1.0)
            );
        }
    }
}
