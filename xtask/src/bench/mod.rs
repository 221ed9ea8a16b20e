//! `cargo xtask bench …`: each benchmark measures memtrace against a baseline in the same
//! invocation and prints a table with ratios.
//!
//! The workloads are run as child processes of a release build of xtask itself, through the
//! hidden `bench workload` subcommand, so that what is timed is one process doing only the
//! workload (see [`workload`]).
mod bpf_stats;
mod marks;
mod overhead;
mod overhead_measure;
mod overhead_tables;
mod overhead_tracers;
mod proc_source;
mod process;
mod reaction;
mod ssh;
mod ssh_check;
mod ssh_container;
mod ssh_events;
mod ssh_guest;
mod ssh_run;
mod ssh_shell_check;
mod ssh_site;
mod ssh_terminal;
mod stats;
mod top;
mod trace;
mod workload;

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// Tracing overhead on a fault storm and a realistic pipeline: none vs memtrace vs bpftrace,
    /// plus the kernel programs' run time per event and `memtrace top`'s own CPU and memory.
    Overhead(overhead::Options),
    /// How fast the guard stops a hog growing at 100 MiB/s, 1 GiB/s and unthrottled inside a
    /// limited cgroup (onset→action median and p99), and the guard's RSS and CPU.
    Reaction(reaction::Options),
    /// sshd under a runaway pipeline in a 1 GiB qemu guest (the whole guest, or a 640 MiB
    /// container in it): kernel alone vs earlyoom vs memtrace.
    Ssh(ssh::Options),
    /// What memtrace costs without eBPF: the /proc source sampling 200 idle processes every
    /// 100 ms, its CPU time against sampling nothing.
    ProcSource(proc_source::Options),
    /// The interactive `memtrace top` at a 1 s refresh with 500 idle processes added: its CPU
    /// against the plain table's, and the bytes it writes to the terminal per refresh.
    Top(top::Options),
    /// What exact stdout marks cost: ns added per write(2) of the traced tree, per write of
    /// any other process and per other syscall, with the pipe-write programs against without.
    Marks(marks::Options),
    /// Size and speed of one hour of trace (write, read, report, exports) against the same
    /// data as JSON lines.
    Trace(trace::Options),
    /// Runs one workload and prints its report line (used by `bench overhead`).
    #[command(hide = true)]
    Workload(workload::Args),
}

/// One memtrace run against the runaway hog in the guest, then a foreground job of an ssh login
/// shell held and let go, both checked (the last step of `cargo xtask test`).
pub fn guest_check() -> anyhow::Result<()> {
    ssh_check::run()?;
    ssh_shell_check::run()
}

/// Runs one benchmark.
pub fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Overhead(options) => overhead::run(&options),
        Bench::Reaction(options) => reaction::run(&options),
        Bench::Ssh(options) => ssh::run(&options),
        Bench::ProcSource(options) => proc_source::run(&options),
        Bench::Top(options) => top::run(&options),
        Bench::Trace(options) => trace::run(&options),
        Bench::Marks(options) => marks::run(&options),
        Bench::Workload(args) => workload::run(&args),
    }
}
