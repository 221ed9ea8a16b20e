//! The pipe-write programs' maps, taken out of the tracer by `run`/`record`: the watch list
//! (which output pipes to report), the writers (the traced tree, which forks join in the
//! kernel) and the ring of reported writes ([`PipeWrite`]).
use std::os::fd::{AsFd, BorrowedFd};

use aya::maps::{Array, HashMap, MapData, RingBuf};
use memtrace_common::{MAX_WATCHED_PIPES, PipeWrite, WatchedPipe};

/// The watch list and the ring of writes to the watched pipes.
pub struct PipeWrites {
    ring: RingBuf<MapData>,
    pipes: Array<MapData, WatchedPipe>,
    writers: HashMap<MapData, u32, u8>,
}

impl std::fmt::Debug for PipeWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeWrites").finish_non_exhaustive()
    }
}

/// Why a pipe could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Slot beyond [`MAX_WATCHED_PIPES`].
    #[error("only {MAX_WATCHED_PIPES} pipes can be watched (slot {0})")]
    Slot(u32),
    /// `fstat` of the pipe failed.
    #[error("fstat of the output pipe: {0}")]
    Stat(#[from] rustix::io::Errno),
    /// Writing the watch list failed.
    #[error("the watch list: {0}")]
    Map(#[from] aya::maps::MapError),
}

/// The kernel's `dev_t` encoding (`MAJOR << 20 | MINOR`) of a device number as `fstat` gives it.
pub fn kernel_dev(st_dev: u64) -> u32 {
    (rustix::fs::major(st_dev) << 20) | (rustix::fs::minor(st_dev) & 0xf_ffff)
}

impl PipeWrites {
    /// Wraps the maps (taken from the loaded object).
    pub(super) fn new(
        ring: RingBuf<MapData>,
        pipes: Array<MapData, WatchedPipe>,
        writers: HashMap<MapData, u32, u8>,
    ) -> Self {
        Self {
            ring,
            pipes,
            writers,
        }
    }

    /// Looks at the writes of process `tgid` and of every process it forks from now on.
    pub fn add_writer(&mut self, tgid: u32) -> Result<(), WatchError> {
        self.writers.insert(tgid, 1, 0)?;
        Ok(())
    }

    /// Stops looking at process `tgid`'s own writes (its children stay).
    pub fn remove_writer(&mut self, tgid: u32) {
        let _ = self.writers.remove(&tgid);
    }

    /// Reports every write to the pipe `fd` (either end) as slot `slot` from now on.
    pub fn watch(&mut self, slot: u32, fd: BorrowedFd<'_>) -> Result<(), WatchError> {
        if slot >= MAX_WATCHED_PIPES {
            return Err(WatchError::Slot(slot));
        }
        let stat = rustix::fs::fstat(fd)?;
        let watched = WatchedPipe {
            ino: stat.st_ino,
            dev: kernel_dev(stat.st_dev),
            lost: 0,
        };
        self.pipes.set(slot, watched, 0)?;
        Ok(())
    }

    /// Whether a write to slot `slot` could not be reported (the ring was full): offsets past
    /// it cannot be matched.
    pub fn lost(&self, slot: u32) -> bool {
        self.pipes.get(&slot, 0).is_ok_and(|p| p.lost != 0)
    }

    /// Takes every reported write waiting in the ring, in the order they were reported.
    pub fn drain(&mut self, out: &mut Vec<PipeWrite>) {
        while let Some(item) = self.ring.next() {
            if item.len() < std::mem::size_of::<PipeWrite>() {
                continue;
            }
            // SAFETY: item holds at least size_of::<PipeWrite>() readable bytes (checked above),
            // the kernel side writes exactly one PipeWrite per record, and PipeWrite is repr(C)
            // integers, valid for any bit pattern; read_unaligned copes with the alignment.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<PipeWrite>()) });
        }
    }

    /// The ring's descriptor (readable when writes wait).
    pub fn ring_fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

#[cfg(test)]
mod tests {
    //! Device numbers as the kernel compares them.
    use super::*;

    #[test]
    fn kernel_dev_encoding() {
        // pipefs is an anonymous device, major 0.
        assert_eq!(kernel_dev(rustix::fs::makedev(0, 14)), 14);
        assert_eq!(kernel_dev(rustix::fs::makedev(0, 300)), 300);
        assert_eq!(kernel_dev(rustix::fs::makedev(8, 1)), (8 << 20) | 1);
    }
}
