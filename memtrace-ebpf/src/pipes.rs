//! Writes to the output pipes `run`/`record` read a traced command's stage marks from, each sent
//! to userspace when the write(2)/writev(2) returns, with its byte count and the writer's memory
//! counters at that moment: userspace matches a mark line to the write that carried it by byte
//! offset, so the mark's boundary sample describes when the pipeline wrote the line, not when
//! memtrace read it.
//!
//! Two BTF tracepoints, attached only by `run`/`record` with `--stage-regex` (fentry/fexit, which
//! would hook the pipe write alone, cannot attach where ftrace is locked down, as on memtrace's
//! own development kernel):
//! * `sched_process_fork` keeps the traced tree in `WRITERS` (a fork of a member joins it);
//! * `sys_exit` looks at every syscall's return: a failed one or one that is not write/writev
//!   costs a compare and one load; a write by a process outside the tree one hash lookup more;
//!   a write by the tree resolves its descriptor to the pipe (five kernel reads) and compares it
//!   with the watch list. Every write of the tree to a watched pipe is reported.
use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use memtrace_common::{MAX_WATCHED_PIPES, NR_RSS, PipeWrite, stat};

use crate::maps::{PIPE_WRITES, PIPES, WRITERS, bump, layout, load, mm_counters, pipe_layout};

// tp_btf/sched_process_fork: TP_PROTO(struct task_struct *parent, struct task_struct *child)
// Runs in the parent's context.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn writer_fork(ctx: BtfTracePointContext) -> i32 {
    try_writer_fork(&ctx);
    0
}

#[inline(always)]
fn try_writer_fork(ctx: &BtfTracePointContext) {
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is only tested for presence.
    if unsafe { WRITERS.get(parent) }.is_none() {
        return;
    }
    let child: *const u8 = ctx.arg(1);
    // SAFETY: `child` is the tracepoint's BTF-typed argument; the offset is a constant from
    // frozen .rodata, so the verifier checks the load against task_struct's BTF.
    let tgid = unsafe { load::<i32>(child, layout().task_tgid) } as u32;
    // A full map evicts its least recently used entry (an exited process, most likely).
    let _ = WRITERS.insert(tgid, 1, 0);
}

// tp_btf/sys_exit (raw_syscalls): TP_PROTO(struct pt_regs *regs, long ret)
#[btf_tracepoint(function = "sys_exit")]
pub fn writer_sys_exit(ctx: BtfTracePointContext) -> i32 {
    let _ = try_sys_exit(&ctx);
    0
}

#[inline(always)]
fn try_sys_exit(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let written: i64 = ctx.arg(1);
    if written <= 0 {
        return Ok(());
    }
    let layout = pipe_layout();
    let regs: *const u8 = ctx.arg(0);
    // SAFETY: `regs` is the tracepoint's BTF-typed argument and the offsets are constants from
    // frozen .rodata: the verifier checks the loads against pt_regs' BTF.
    let nr = unsafe { load::<u64>(regs, layout.regs_nr) };
    if nr != u64::from(layout.nr_write) && nr != u64::from(layout.nr_writev) {
        return Ok(());
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is only tested for presence.
    if unsafe { WRITERS.get(tgid) }.is_none() {
        return Ok(());
    }
    // SAFETY: as above.
    let fd = unsafe { load::<u64>(regs, layout.regs_fd) };
    let (ino, dev) = descriptor_inode(fd, &layout)?;
    if ino == 0 {
        return Ok(());
    }
    for index in 0..MAX_WATCHED_PIPES {
        let Some(pipe) = PIPES.get_ptr_mut(index) else {
            continue;
        };
        // SAFETY: `pipe` points into the array map's value; the fields are plain integers.
        if unsafe { (*pipe).ino != ino || (*pipe).dev != dev } {
            continue;
        }
        let Some(mut entry) = PIPE_WRITES.reserve::<PipeWrite>(0) else {
            bump(stat::PIPE_WRITES_LOST);
            // SAFETY: as above; a plain store of a flag that only ever goes from 0 to 1.
            unsafe { (*pipe).lost = 1 };
            return Ok(());
        };
        entry.write(PipeWrite {
            tgid,
            pipe: index,
            bytes: written as u64,
            // SAFETY: plain helper call without arguments.
            ts_ns: unsafe { bpf_ktime_get_ns() },
            rss_bytes: writer_counters(layout.task_mm),
        });
        // Userspace drains at every sample and mark: no wakeup per write.
        entry.submit(u64::from(BPF_RB_NO_WAKEUP));
        return Ok(());
    }
    Ok(())
}

/// (inode number, kernel device) of the current task's descriptor `fd`; (0, 0) when it has none.
#[inline(always)]
fn descriptor_inode(fd: u64, layout: &memtrace_common::PipeLayout) -> Result<(u64, u32), i64> {
    // SAFETY: bpf_get_current_task_btf returns a BTF-typed pointer to the current task; the
    // loads through it and through the pointers read from it are at constant offsets, checked
    // against BTF and fault-tolerant.
    let fdt: *const u8 = unsafe {
        let task = bpf_get_current_task_btf().cast::<u8>();
        let files: *const u8 = load(task, layout.task_files);
        load(files, layout.files_fdt)
    };
    // SAFETY: as above.
    let max_fds = unsafe { load::<u32>(fdt, layout.fdtable_max_fds) };
    if fdt.is_null() || fd >= u64::from(max_fds) {
        return Ok((0, 0));
    }
    // `fdtable.fd` is a `struct file **`, which the verifier does not follow: the rest is read
    // with bpf_probe_read_kernel, which tolerates any address (a bad one returns an error).
    // SAFETY: as above for the load; each read below is a fault-tolerant helper call.
    unsafe {
        let array: u64 = load(fdt, layout.fdtable_fd);
        let file: u64 = bpf_probe_read_kernel((array + fd * 8) as *const u64)?;
        if file == 0 {
            return Ok((0, 0));
        }
        let at = |base: u64, offset: u32| (base + u64::from(offset)) as *const u64;
        let inode: u64 = bpf_probe_read_kernel(at(file, layout.file_inode))?;
        let ino: u64 = bpf_probe_read_kernel(at(inode, layout.inode_ino))?;
        let sb: u64 = bpf_probe_read_kernel(at(inode, layout.inode_sb))?;
        let dev: u32 = bpf_probe_read_kernel(at(sb, layout.sb_dev).cast::<u32>())?;
        Ok((ino, dev))
    }
}

/// The current task's mm counters (zero for a task without an mm).
#[inline(always)]
fn writer_counters(task_mm: u32) -> [u64; NR_RSS] {
    // SAFETY: bpf_get_current_task_btf returns a BTF-typed pointer to the current task; the
    // offset of its `mm` is a constant from frozen .rodata.
    let mm: *const u8 = unsafe { load(bpf_get_current_task_btf().cast::<u8>(), task_mm) };
    if mm.is_null() {
        return [0; NR_RSS];
    }
    // SAFETY: `mm` was loaded through a BTF-typed pointer, so it is one too.
    unsafe { mm_counters(mm) }
}
