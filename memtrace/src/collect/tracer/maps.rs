//! The maps the tracer reads, taken out of the loaded object — or rebuilt from descriptors a
//! loader helper sent ([`super::helper`]): the same five either way, in [`MAP_NAMES`] order.
use std::os::fd::{AsFd as _, BorrowedFd};

use aya::{
    Ebpf,
    maps::{HashMap, IterableMap as _, Map, MapData, PerCpuArray, RingBuf},
};
use memtrace_common::{FaultSlot, ProcStats, RssSlot};

use super::TracerError;

/// The maps, in the order of [`TracerMaps::fds`] and of a helper's message.
pub const MAP_NAMES: [&str; 5] = ["PROCS", "RSS_SLOTS", "FAULT_SLOTS", "STATS", "EVENTS"];

/// Per-process counters, the per-CPU caches and batches, health counters and the event ring.
pub struct TracerMaps {
    /// Per-process counters by tgid.
    pub procs: HashMap<MapData, u32, ProcStats>,
    /// Per-CPU caches of resident counters.
    pub rss_slots: PerCpuArray<MapData, RssSlot>,
    /// Per-CPU fault batches.
    pub fault_slots: PerCpuArray<MapData, FaultSlot>,
    /// Health counters, per CPU.
    pub stats: PerCpuArray<MapData, u64>,
    /// `ProcEvent`s: exits and OOM victims.
    pub events: RingBuf<MapData>,
}

impl TracerMaps {
    /// Takes the maps out of the loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, TracerError> {
        let mut maps = Vec::with_capacity(MAP_NAMES.len());
        for name in MAP_NAMES {
            maps.push(ebpf.take_map(name).ok_or(super::missing_map(name))?);
        }
        Self::from_maps(maps)
    }

    /// The typed maps over `maps`, in [`MAP_NAMES`] order.
    pub fn from_maps(maps: Vec<Map>) -> Result<Self, TracerError> {
        let [procs, rss_slots, fault_slots, stats, events]: [Map; 5] =
            maps.try_into().map_err(|_| super::missing_map("EVENTS"))?;
        let wrap = |name: &'static str| move |source| TracerError::Map { name, source };
        Ok(Self {
            procs: HashMap::try_from(procs).map_err(wrap("PROCS"))?,
            rss_slots: PerCpuArray::try_from(rss_slots).map_err(wrap("RSS_SLOTS"))?,
            fault_slots: PerCpuArray::try_from(fault_slots).map_err(wrap("FAULT_SLOTS"))?,
            stats: PerCpuArray::try_from(stats).map_err(wrap("STATS"))?,
            events: RingBuf::try_from(events).map_err(wrap("EVENTS"))?,
        })
    }

    /// Their descriptors, in [`MAP_NAMES`] order.
    pub fn fds(&self) -> [BorrowedFd<'_>; 5] {
        [
            self.procs.map().fd().as_fd(),
            self.rss_slots.map().fd().as_fd(),
            self.fault_slots.map().fd().as_fd(),
            self.stats.map().fd().as_fd(),
            self.events.as_fd(),
        ]
    }
}
