//! The KV cache's home on the device: two pools of slots, one for blocks' global parts and one
//! for their sliding-window parts, each one buffer (so that attention reads any sequence's
//! blocks through one binding). Slots are handed out and taken back through [`KvSlots`] by the
//! cache's parts as they are made and dropped.

use crate::gpu::{BufferId, GpuError};
use crate::model::KvSlots;
use std::sync::Mutex;

#[derive(Debug)]
pub struct KvPool {
    /// (global, sliding) pool buffers, and their slots' sizes in bytes.
    pub buffers: (BufferId, BufferId),
    pub slot_bytes: (u64, u64),
    free: Mutex<(Vec<u32>, Vec<u32>)>,
}

impl KvPool {
    /// Pools of `slots` slots each, in buffers made by `create` (size, label).
    pub fn new(
        slot_bytes: (u64, u64),
        slots: (u32, u32),
        mut create: impl FnMut(u64, &str) -> Result<BufferId, GpuError>,
    ) -> Result<KvPool, GpuError> {
        let global = create(slot_bytes.0 * slots.0 as u64, "kv global")?;
        // A model without sliding layers still binds a (small) sliding pool.
        let local = create((slot_bytes.1 * slots.1 as u64).max(4), "kv sliding")?;
        Ok(KvPool {
            buffers: (global, local),
            slot_bytes,
            // Popped from the end: slot 0 first.
            free: Mutex::new(((0..slots.0).rev().collect(), (0..slots.1).rev().collect())),
        })
    }
}

impl KvSlots for KvPool {
    fn take(&self, global: bool) -> Option<u32> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if global {
            free.0.pop()
        } else {
            free.1.pop()
        }
    }

    fn give_back(&self, global: bool, slot: u32) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if global {
            free.0.push(slot)
        } else {
            free.1.push(slot)
        }
    }
}
