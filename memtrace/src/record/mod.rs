//! The recorder: traces a pipeline's whole process tree (or every process) into a trace file,
//! with stage marks. [`recorder`] runs the event loop — it starts the command ([`child`]) or
//! attaches to a running one, samples the tree every interval and at every mark ([`marks`];
//! [`exact_marks`] dates a stdout mark to the pipeline's write of it),
//! and hands each sample to the [`session`], which keeps the tree, writes the [`trace`] and runs
//! the hooks (the guard plugs in through [`RunHook`]). [`env`] is what `memtrace run` adds before
//! the child starts: the swap check and a memory-friendly environment; [`run_cgroup`] the cgroup
//! `memtrace run` starts it in (frozen by the guard, limited by `--memory-max`), inside the
//! transient systemd scope [`run_scope`] puts the run in where it can. The `run` and `record`
//! subcommands around it live in `cmd::run`.
pub mod child;
pub mod env;
pub mod exact_marks;
pub mod marks;
pub mod recorder;
pub mod run_cgroup;
pub mod run_scope;
pub mod session;
pub mod trace;

pub use marks::Mark;

use crate::{collect::model::Snapshot, record::trace::Event};

/// Something that watches every snapshot of a run (the guard): it sees the whole snapshot and
/// the pids of the traced tree, and returns events to record (guard decisions with reasons).
pub trait RunHook {
    /// Called after every sample.
    fn on_snapshot(&mut self, snapshot: &Snapshot, tree: &[u32]) -> Vec<Event>;
    /// Called once when the run ends.
    fn finish(&mut self) -> Vec<Event>;
    /// Called when a terminating signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT) is forwarded to the
    /// pipeline: a hook holding it stopped must let it go so it can act on the signal.
    fn on_terminate(&mut self) -> Vec<Event> {
        Vec::new()
    }
    /// Told once, before the pipeline starts, that it runs in the cgroup `dir` of its own,
    /// limited to `limit` bytes (the lower of `--memory-high` and `--memory-max`) if set.
    fn pipeline_cgroup(&mut self, _dir: &std::path::Path, _limit: Option<u64>) {}
}
