//! Plain `#[repr(C)]` types shared by memtrace's kernel programs and its userspace.
//!
//! Every struct here is padding-free (explicit `_pad` fields where alignment needs them) and its
//! size is checked at compile time, so both sides agree byte for byte. With the `user` feature the
//! types also implement `aya::Pod`, which userspace needs to read them out of maps.
#![no_std]

/// Capacity of the per-process map. A process that cannot get an entry is counted in
/// [`stat::MAP_FULL`], never silently dropped.
pub const MAX_PROCS: u32 = 32_768;
/// Capacity of the per-thread map that remembers when a direct reclaim began.
pub const MAX_RECLAIMING_THREADS: u32 = 4_096;
/// Size of the ring buffer that carries rare events (exits, OOM kills) to userspace.
pub const RINGBUF_BYTES: u32 = 256 * 1024;
/// Number of mm counters the kernel keeps (`NR_MM_COUNTERS`): file, anon, swap entries, shmem.
pub const NR_RSS: usize = 4;
/// Length of a task's command name, `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;

/// Per-process (tgid) memory counters, aggregated in kernel.
///
/// `rss_bytes` is indexed by the kernel's own `MM_*` counter number (file, anon, swapents,
/// shmem on every kernel since 4.x); userspace reads the real numbering from BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStats {
    /// Current value of each mm counter, in bytes.
    pub rss_bytes: [u64; NR_RSS],
    /// Highest resident size (file + anon + shmem) seen, in bytes.
    pub peak_rss_bytes: u64,
    /// Page faults. With the optional per-fault hook: the faults folded into this entry so far
    /// (see [`FaultSlot`] for the rest). In exit events, always the kernel's own count for the
    /// whole thread group (minor + major).
    pub faults: u64,
    /// Number of direct-reclaim stalls the process's threads went through.
    pub reclaim_count: u64,
    /// Total time its threads spent stalled in direct reclaim, in ns.
    pub reclaim_ns: u64,
    /// `jiffies` when `rss_bytes` was last read from the mm (0: seeded from /proc). Of several
    /// copies of a process's counters (this entry, per-CPU [`RssSlot`]s), the newest wins.
    pub stamp: u64,
}
const _: () = assert!(core::mem::size_of::<ProcStats>() == 72);

impl ProcStats {
    /// All counters zero: the value of a freshly inserted entry.
    pub const ZERO: Self = Self {
        rss_bytes: [0; NR_RSS],
        peak_rss_bytes: 0,
        faults: 0,
        reclaim_count: 0,
        reclaim_ns: 0,
        stamp: 0,
    };

    /// Folds `other`, another copy of the same process's counters, into `self`: the resident
    /// counters of the newer copy (the higher `stamp`; on a tie, `other`) win, and the peak is
    /// the higher of both. This is the one merge rule of entries and per-CPU [`RssSlot`]s, used
    /// by the kernel programs (writing a slot back, reading an entry with this CPU's slot) and by
    /// userspace (merging every CPU's slot) alike.
    #[inline(always)]
    pub fn merge_newer(&mut self, other: &ProcStats) {
        if other.stamp >= self.stamp {
            self.rss_bytes = other.rss_bytes;
            self.stamp = other.stamp;
        }
        if other.peak_rss_bytes > self.peak_rss_bytes {
            self.peak_rss_bytes = other.peak_rss_bytes;
        }
    }
}

/// Per-CPU cache of the resident counters of the process whose memory last changed on this
/// CPU. A run of `rss_stat` events of one process on one CPU updates only this slot (no hash
/// lookup); the slot is written back to the process's entry when another process's event
/// arrives on the CPU. Userspace merges entries and slots, newest `stamp` first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RssSlot {
    /// Process whose counters the slot holds (0: none).
    pub tgid: u32,
    /// Explicit padding, always 0.
    pub _pad: u32,
    /// Its counters: `rss_bytes`, `peak_rss_bytes` and `stamp` are meaningful.
    pub stats: ProcStats,
}
const _: () = assert!(core::mem::size_of::<RssSlot>() == 80);

/// Per-CPU batch of user page faults: consecutive faults by the same process on one CPU only bump
/// `pending`; the batch is folded into [`ProcStats::faults`] when another process faults there.
/// Userspace adds the pending counts of every CPU when it reads the totals.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultSlot {
    /// Process whose faults are pending on this CPU (0: none).
    pub tgid: u32,
    /// Explicit padding, always 0.
    pub _pad: u32,
    /// Faults not yet folded into the process's entry.
    pub pending: u64,
}
const _: () = assert!(core::mem::size_of::<FaultSlot>() == 16);

/// What a [`ProcEvent`] reports.
pub mod event_kind {
    /// The whole thread group exited; the stats are its last values.
    pub const EXIT: u32 = 1;
    /// The kernel OOM killer chose this process (`oom:mark_victim`).
    pub const OOM_VICTIM: u32 = 2;
}

/// A rare event sent through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcEvent {
    /// One of [`event_kind`].
    pub kind: u32,
    /// The process (tgid).
    pub pid: u32,
    /// `bpf_ktime_get_ns()` at the event (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// The task's command name, NUL-padded.
    pub comm: [u8; COMM_LEN],
    /// The process's counters at the time of the event.
    pub stats: ProcStats,
}
const _: () = assert!(core::mem::size_of::<ProcEvent>() == 104);

/// Size of the ring buffer of writes to a traced command's output pipes (`run`/`record` with
/// `--stage-regex`): 16 384 records, drained at every sample and every mark. Programs that do
/// not watch pipes get the smallest ring ([`PIPE_WRITES_RINGBUF_MIN`]).
pub const PIPE_WRITES_RINGBUF_BYTES: u32 = 1024 * 1024;
/// The ring of pipe writes when no pipe is watched: one page.
pub const PIPE_WRITES_RINGBUF_MIN: u32 = 4096;
/// How many output pipes can be watched: the traced command's stdout and stderr.
pub const MAX_WATCHED_PIPES: u32 = 2;

/// An output pipe whose writes are reported ([`PipeWrite`]), identified as `fstat` sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchedPipe {
    /// The pipe's inode number (0: this slot watches nothing).
    pub ino: u64,
    /// Its device, in the kernel's `dev_t` encoding (`MAJOR << 20 | MINOR`).
    pub dev: u32,
    /// Set by the kernel side when a write to this pipe could not be reported (ring full):
    /// byte offsets past that point cannot be matched to writes any more.
    pub lost: u32,
}
const _: () = assert!(core::mem::size_of::<WatchedPipe>() == 16);

/// One write to a watched pipe, reported when the write(2) or writev(2) returns (the bytes are
/// in the pipe), with the writer's memory counters at that moment.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipeWrite {
    /// The writing process (tgid).
    pub tgid: u32,
    /// Index of the watched pipe (its slot in the watch list).
    pub pipe: u32,
    /// Bytes the write put into the pipe (always > 0).
    pub bytes: u64,
    /// `bpf_ktime_get_ns()` when it returned (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// The writer's mm counters, in bytes, indexed like [`ProcStats::rss_bytes`].
    pub rss_bytes: [u64; NR_RSS],
}
const _: () = assert!(core::mem::size_of::<PipeWrite>() == 56);

/// Capacity of the map of the traced tree's processes whose writes are looked at (an LRU:
/// entries of exited processes are never removed, they age out).
pub const MAX_WRITERS: u32 = 16_384;

/// What the pipe-write programs need to know about this kernel, read from BTF (and the
/// architecture's syscall numbers) by userspace and handed over as a read-only global before
/// load (like [`KernelLayout`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipeLayout {
    /// Offset of the syscall number in `pt_regs` (`orig_ax` on x86-64, `syscallno` on arm64).
    pub regs_nr: u32,
    /// Offset of the first syscall argument in `pt_regs` as it stands at syscall exit (`di`
    /// on x86-64, `orig_x0` on arm64).
    pub regs_fd: u32,
    /// The number of write(2).
    pub nr_write: u32,
    /// The number of writev(2).
    pub nr_writev: u32,
    /// Offset of `task_struct.files`.
    pub task_files: u32,
    /// Offset of `files_struct.fdt`.
    pub files_fdt: u32,
    /// Offset of `fdtable.fd` (a `struct file **`).
    pub fdtable_fd: u32,
    /// Offset of `fdtable.max_fds`.
    pub fdtable_max_fds: u32,
    /// Offset of `file.f_inode`.
    pub file_inode: u32,
    /// Offset of `inode.i_ino` (an `unsigned long`).
    pub inode_ino: u32,
    /// Offset of `inode.i_sb` (a `struct super_block *`).
    pub inode_sb: u32,
    /// Offset of `super_block.s_dev` (a `dev_t`).
    pub sb_dev: u32,
    /// Offset of `task_struct.mm`.
    pub task_mm: u32,
    /// Explicit padding, always 0.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<PipeLayout>() == 56);

impl PipeLayout {
    /// Placeholder the object is compiled with; userspace overwrites it before it loads the
    /// programs that read it.
    pub const UNSET: Self = Self {
        regs_nr: 0,
        regs_fd: 0,
        nr_write: 0,
        nr_writev: 0,
        task_files: 0,
        files_fdt: 0,
        fdtable_fd: 0,
        fdtable_max_fds: 0,
        file_inode: 0,
        inode_ino: 0,
        inode_sb: 0,
        sb_dev: 0,
        task_mm: 0,
        _pad: 0,
    };
}

/// Indices of the per-CPU `STATS` array: health counters of the tracer itself.
pub mod stat {
    /// `mm_vmscan_wakeup_kswapd` events, system wide.
    pub const KSWAPD_WAKEUPS: u32 = 0;
    /// Events lost because the per-process map was full.
    pub const MAP_FULL: u32 = 1;
    /// Events lost because the ring buffer was full.
    pub const RINGBUF_DROPS: u32 = 2;
    /// rss_stat events whose mm had no owner (mm being torn down); not attributable.
    pub const NO_OWNER: u32 = 3;
    /// Direct-reclaim ends without a matching begin (tracer attached mid-stall, or map full).
    pub const RECLAIM_UNMATCHED: u32 = 4;
    /// Writes to a watched output pipe that could not be reported (ring full).
    pub const PIPE_WRITES_LOST: u32 = 5;
    /// Number of slots in the array.
    pub const COUNT: u32 = 8;
}

/// Kernel structure layout, read from BTF by userspace and handed to the programs as a read-only
/// global before load (there is no CO-RE relocation in Rust eBPF code).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLayout {
    /// Offset of `mm_struct.owner` (a `task_struct *`).
    pub mm_owner: u32,
    /// Offset of `mm_struct.rss_stat` (an array of `percpu_counter`).
    pub mm_rss_stat: u32,
    /// Size of one `percpu_counter`, the stride of that array.
    pub rss_counter_size: u32,
    /// Offset of `percpu_counter.count` (an `s64`).
    pub counter_count: u32,
    /// Offset of `task_struct.tgid`.
    pub task_tgid: u32,
    /// Offset of `task_struct.comm`.
    pub task_comm: u32,
    /// Kernel number of the swap-entries counter (`MM_SWAPENTS`), excluded from resident size.
    pub swap_member: u32,
    /// Page size in bytes.
    pub page_size: u32,
    /// Prototype differences between kernels, see [`layout_flags`].
    pub flags: u32,
    /// Offset of `task_struct.min_flt` (the task's own minor faults).
    pub task_min_flt: u32,
    /// Offset of `task_struct.maj_flt`.
    pub task_maj_flt: u32,
    /// Offset of `task_struct.signal` (a `signal_struct *`).
    pub task_signal: u32,
    /// Offset of `signal_struct.min_flt` (minor faults of the group's reaped threads).
    pub signal_min_flt: u32,
    /// Offset of `signal_struct.maj_flt`.
    pub signal_maj_flt: u32,
    /// Offset of `task_struct.mm` (a `mm_struct *`).
    pub task_mm: u32,
    /// Offset of `mm_struct.hiwater_rss` (the kernel's resident high-water mark, in pages).
    pub mm_hiwater_rss: u32,
}
const _: () = assert!(core::mem::size_of::<KernelLayout>() == 64);

/// Bits of [`KernelLayout::flags`].
pub mod layout_flags {
    /// `sched_process_exit` passes `bool group_dead` as its 2nd argument (kernel ≥ 6.16);
    /// without it, the thread-group leader's exit stands for the group's.
    pub const EXIT_HAS_GROUP_DEAD: u32 = 1;
    /// `mark_victim` passes the `task_struct *` (kernel ≥ 6.8); before, it passed the pid.
    pub const VICTIM_IS_TASK: u32 = 2;
    /// The mm counters are `atomic_long_t` (kernel < 6.2), which the verifier will not let a
    /// program load through a BTF pointer: they are read with `bpf_probe_read_kernel` instead.
    pub const RSS_ATOMIC: u32 = 4;
    /// Every exiting process reports its memory, read from its mm, not only those the maps
    /// hold: set by userspace for the rare-event programs where `sched_process_exit` still runs
    /// before the task lets go of its mm (kernel ≥ 6.16, with [`EXIT_HAS_GROUP_DEAD`]), so that
    /// `top` sees a process born and gone between two samples, with its peak.
    pub const EXIT_MEMORY: u32 = 8;
}

impl KernelLayout {
    /// Placeholder the object is compiled with; userspace always overwrites it before load.
    pub const UNSET: Self = Self {
        mm_owner: 0,
        mm_rss_stat: 0,
        rss_counter_size: 0,
        counter_count: 0,
        task_tgid: 0,
        task_comm: 0,
        swap_member: 0,
        page_size: 0,
        flags: 0,
        task_min_flt: 0,
        task_maj_flt: 0,
        task_signal: 0,
        signal_min_flt: 0,
        signal_maj_flt: 0,
        task_mm: 0,
        mm_hiwater_rss: 0,
    };
}

#[cfg(feature = "user")]
mod pod {
    use super::{
        FaultSlot, KernelLayout, PipeLayout, PipeWrite, ProcEvent, ProcStats, RssSlot, WatchedPipe,
    };

    // SAFETY: each type is #[repr(C)], made only of integers and integer arrays, has no padding
    // (sizes checked above), so every bit pattern is a valid value.
    unsafe impl aya::Pod for ProcStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FaultSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ProcEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for KernelLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RssSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for WatchedPipe {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PipeWrite {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PipeLayout {}
}

#[cfg(test)]
mod tests {
    //! The merge rule of per-process counters.
    use super::*;

    fn stats(anon: u64, peak: u64, stamp: u64) -> ProcStats {
        ProcStats {
            rss_bytes: [0, anon, 0, 0],
            peak_rss_bytes: peak,
            stamp,
            ..ProcStats::ZERO
        }
    }

    #[test]
    fn newest_counters_and_highest_peak_win() {
        let mut entry = stats(10, 50, 100);
        entry.merge_newer(&stats(30, 40, 105));
        assert_eq!(
            (entry.rss_bytes[1], entry.stamp),
            (30, 105),
            "newer copy's counters"
        );
        assert_eq!(entry.peak_rss_bytes, 50, "the entry's higher peak stays");
        entry.merge_newer(&stats(20, 60, 103));
        assert_eq!(
            entry.rss_bytes[1], 30,
            "an older copy's counters are ignored"
        );
        assert_eq!(entry.peak_rss_bytes, 60, "but its higher peak counts");
        entry.merge_newer(&stats(31, 0, 105));
        assert_eq!(entry.rss_bytes[1], 31, "on a tie the other copy wins");
    }
}
