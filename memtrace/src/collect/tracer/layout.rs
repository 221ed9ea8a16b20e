//! What the kernel programs need to know about this kernel, read from its BTF: structure
//! offsets, the numbering of the mm counters, and which tracepoint prototypes it has.
use memtrace_common::{KernelLayout, PipeLayout, layout_flags};

use crate::host::btf::{Btf, BtfError};

/// Every BTF tracepoint memtrace attaches to, by program name.
pub const TRACEPOINTS: &[(&str, &str)] = &[
    ("rss_stat", "rss_stat"),
    ("page_fault_user", "page_fault_user"),
    ("direct_reclaim_begin", "mm_vmscan_direct_reclaim_begin"),
    ("direct_reclaim_end", "mm_vmscan_direct_reclaim_end"),
    ("memcg_reclaim_begin", "mm_vmscan_memcg_reclaim_begin"),
    ("memcg_reclaim_end", "mm_vmscan_memcg_reclaim_end"),
    ("wakeup_kswapd", "mm_vmscan_wakeup_kswapd"),
    ("sched_process_exit", "sched_process_exit"),
    ("mark_victim", "mark_victim"),
];

/// The BTF tracepoints of the pipe-write programs (`run`/`record` with `--stage-regex`), by
/// program name.
pub const PIPE_TRACEPOINTS: &[(&str, &str)] = &[
    ("writer_fork", "sched_process_fork"),
    ("writer_sys_exit", "sys_exit"),
];

/// This architecture's `pt_regs` members holding the syscall number and, at syscall exit, the
/// first argument; and the numbers of write(2) and writev(2).
#[cfg(target_arch = "x86_64")]
const SYSCALL_ABI: (&str, &str, u32, u32) = ("orig_ax", "di", 1, 20);
#[cfg(target_arch = "aarch64")]
const SYSCALL_ABI: (&str, &str, u32, u32) = ("syscallno", "orig_x0", 64, 66);

/// The offsets the pipe-write programs read.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn pipe_layout(btf: &Btf) -> Result<PipeLayout, BtfError> {
    let (nr, fd, nr_write, nr_writev) = SYSCALL_ABI;
    Ok(PipeLayout {
        regs_nr: btf.member_offset("pt_regs", nr)?,
        regs_fd: btf.member_offset("pt_regs", fd)?,
        nr_write,
        nr_writev,
        task_files: btf.member_offset("task_struct", "files")?,
        files_fdt: btf.member_offset("files_struct", "fdt")?,
        fdtable_fd: btf.member_offset("fdtable", "fd")?,
        fdtable_max_fds: btf.member_offset("fdtable", "max_fds")?,
        file_inode: btf.member_offset("file", "f_inode")?,
        inode_ino: btf.member_offset("inode", "i_ino")?,
        inode_sb: btf.member_offset("inode", "i_sb")?,
        sb_dev: btf.member_offset("super_block", "s_dev")?,
        task_mm: btf.member_offset("task_struct", "mm")?,
        _pad: 0,
    })
}

/// Other architectures: no exact stdout marks.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn pipe_layout(_btf: &Btf) -> Result<PipeLayout, BtfError> {
    Err(BtfError::Missing(
        "the syscall layout of this architecture".to_owned(),
    ))
}

/// The programs of rare events (reclaim, kswapd wake-ups, exits, OOM victims): the set the
/// guard attaches, none of them on the page-fault path.
pub const RARE_EVENTS: &[&str] = &[
    "direct_reclaim_begin",
    "direct_reclaim_end",
    "memcg_reclaim_begin",
    "memcg_reclaim_end",
    "wakeup_kswapd",
    "sched_process_exit",
    "mark_victim",
];

/// Kernel numbering of the mm counters (`MM_FILEPAGES`, …), indices into
/// `ProcStats::rss_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RssMembers {
    /// `MM_FILEPAGES`.
    pub file: usize,
    /// `MM_ANONPAGES`.
    pub anon: usize,
    /// `MM_SWAPENTS`.
    pub swap: usize,
    /// `MM_SHMEMPAGES`.
    pub shmem: usize,
}

/// The tracepoints of [`TRACEPOINTS`] this kernel lacks.
pub fn missing_tracepoints(btf: &Btf) -> Result<Vec<&'static str>, BtfError> {
    let mut missing = Vec::new();
    for (_, tracepoint) in TRACEPOINTS {
        if btf.tracepoint_args(tracepoint)?.is_none() {
            missing.push(*tracepoint);
        }
    }
    Ok(missing)
}

/// Reads the counter numbering from BTF.
pub fn rss_members(btf: &Btf) -> Result<RssMembers, BtfError> {
    let index = |name: &str| -> Result<usize, BtfError> {
        let value = btf.enum_value(name)?;
        usize::try_from(value)
            .ok()
            .filter(|&v| v < memtrace_common::NR_RSS)
            .ok_or_else(|| BtfError::Missing(format!("{name} below {}", memtrace_common::NR_RSS)))
    };
    Ok(RssMembers {
        file: index("MM_FILEPAGES")?,
        anon: index("MM_ANONPAGES")?,
        swap: index("MM_SWAPENTS")?,
        shmem: index("MM_SHMEMPAGES")?,
    })
}

/// Builds the layout global for this kernel.
pub fn kernel_layout(btf: &Btf, page_size: u32) -> Result<KernelLayout, BtfError> {
    let (rss_counter_size, counter_count) = rss_counter_layout(btf)?;
    let mut flags = 0;
    if btf.tracepoint_args("sched_process_exit")? == Some(2) {
        flags |= layout_flags::EXIT_HAS_GROUP_DEAD;
    }
    if btf.tracepoint_args("mark_victim")? == Some(2) {
        flags |= layout_flags::VICTIM_IS_TASK;
    }
    if btf
        .struct_name(btf.member_type("mm_struct", "rss_stat")?)?
        .as_deref()
        == Some("mm_rss_stat")
    {
        flags |= layout_flags::RSS_ATOMIC;
    }
    Ok(KernelLayout {
        mm_owner: btf.member_offset("mm_struct", "owner")?,
        mm_rss_stat: btf.member_offset("mm_struct", "rss_stat")?,
        rss_counter_size,
        counter_count,
        task_tgid: btf.member_offset("task_struct", "tgid")?,
        task_comm: btf.member_offset("task_struct", "comm")?,
        swap_member: rss_members(btf)?.swap as u32,
        page_size,
        flags,
        task_min_flt: btf.member_offset("task_struct", "min_flt")?,
        task_maj_flt: btf.member_offset("task_struct", "maj_flt")?,
        task_signal: btf.member_offset("task_struct", "signal")?,
        signal_min_flt: btf.member_offset("signal_struct", "min_flt")?,
        signal_maj_flt: btf.member_offset("signal_struct", "maj_flt")?,
        task_mm: btf.member_offset("task_struct", "mm")?,
        mm_hiwater_rss: btf.member_offset("mm_struct", "hiwater_rss")?,
    })
}

/// (stride, offset of the value) of the mm counters: `struct percpu_counter rss_stat[N]` since
/// 6.2, `struct mm_rss_stat { atomic_long_t count[N]; }` before.
fn rss_counter_layout(btf: &Btf) -> Result<(u32, u32), BtfError> {
    let rss_type = btf.member_type("mm_struct", "rss_stat")?;
    if let Some((element, _)) = btf.array_of(rss_type)?
        && btf.struct_name(element)?.as_deref() == Some("percpu_counter")
    {
        return Ok((
            btf.struct_size("percpu_counter")?,
            btf.member_offset("percpu_counter", "count")?,
        ));
    }
    if btf.struct_name(rss_type)?.as_deref() == Some("mm_rss_stat") {
        return Ok((8, btf.member_offset("mm_rss_stat", "count")?));
    }
    Err(BtfError::Missing(
        "a known layout of mm_struct.rss_stat".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    //! The running kernel's layout (BTF is world-readable, no root needed).
    use super::*;

    #[test]
    fn running_kernel_layout_is_sane() {
        let btf = Btf::from_sys_fs().expect("this machine has /sys/kernel/btf/vmlinux");
        let layout = kernel_layout(&btf, 4096).expect("layout");
        assert!(layout.mm_owner > 0 && layout.task_tgid > 0 && layout.task_comm > 0);
        assert!(layout.rss_counter_size >= 8);
        assert_eq!(
            rss_members(&btf).expect("members"),
            RssMembers {
                file: 0,
                anon: 1,
                swap: 2,
                shmem: 3
            }
        );
        assert_eq!(
            missing_tracepoints(&btf).expect("tracepoints"),
            Vec::<&str>::new()
        );
        let pipes = pipe_layout(&btf).expect("pipe layout");
        assert!(pipes.file_inode > 0 && pipes.inode_ino > 0 && pipes.task_mm > 0);
        assert!(pipes.regs_nr > 0 && pipes.task_files > 0 && pipes.fdtable_fd > 0);
        for (_, tracepoint) in PIPE_TRACEPOINTS {
            assert!(btf.tracepoint_args(tracepoint).expect("btf").is_some());
        }
    }
}
