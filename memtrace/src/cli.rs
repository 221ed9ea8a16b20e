//! Raw command-line arguments (clap). Each subcommand's raw args are turned into a validated
//! config by its own module before anything runs.
use clap::{Parser, Subcommand};

/// Low-overhead eBPF memory tracer and pressure responder for Linux GPU hosts.
#[derive(Debug, Parser)]
#[command(name = "memtrace", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Act on memory pressure: warn, reclaim, suspend/resume, kill the growing tree (root).
    #[command(after_long_help = crate::collect::source::GUARD_MODE_HELP)]
    Guard(crate::guard::GuardArgs),
    /// Live per-process memory table sorted by growth (needs root: loads eBPF).
    #[command(after_long_help = crate::collect::source::TOP_MODE_HELP)]
    Top(crate::cmd::top::TopArgs),
    /// Memory status: RAM, swap, PSI and the top processes by RSS (no root needed).
    Status(crate::cmd::status::StatusArgs),
    /// Swap: status against the recommendation for this RAM, setup and removal of a swap file.
    Swap(crate::cmd::swap::SwapArgs),
    /// Host checks (swap, sysctls, THP, PSI, BTF, tracepoints, NVML, sshd, guard) with fixes.
    Doctor(crate::cmd::doctor::DoctorArgs),
    /// Free memory: drop the page cache, delete old temp files; reports what each step freed.
    Clean(crate::cmd::clean::CleanArgs),
    /// Run a pipeline under tracing: swap check, memory-friendly env, stage marks, `[Memory]`
    /// lines, a trace file, the child's exit code (needs root: loads eBPF).
    Run(crate::cmd::run::RunArgs),
    /// Record a trace of a command, a running process tree (--pid) or every process.
    Record(crate::cmd::run::RecordArgs),
    /// Mark a stage of the pipeline running under `memtrace run` (STAGE [--clip ID] or --end).
    Mark(crate::record::marks::MarkArgs),
    /// Which stage leaks, how much per clip, host or GPU: the report of a trace.
    Report(crate::analyze::report::ReportArgs),
    /// Export a trace for Perfetto (ui.perfetto.dev), as CSV or as JSON lines.
    Export(crate::analyze::export::ExportArgs),
    /// A synthetic multi-stage clip pipeline with one leaking stage, run and reported.
    Demo(crate::cmd::demo::DemoArgs),
    /// The pipeline `memtrace demo` runs.
    #[command(hide = true)]
    DemoPipeline(crate::cmd::demo_pipeline::DemoPipelineArgs),
    /// Load and attach the eBPF programs for the guard, hand it the descriptors and exit (run by
    /// the guard itself, never by hand).
    #[command(hide = true)]
    LoadTracer(crate::collect::tracer::helper::LoadTracerArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (memtrace.1 and one per subcommand) into DIR (`cargo xtask install`).
    #[command(hide = true)]
    ManPages {
        /// Where the pages go (created if missing).
        dir: std::path::PathBuf,
    },
}

/// Shell completions for `shell`, generated from the command-line definition.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "memtrace", &mut out);
    out
}

/// Renders the man pages: `memtrace.1` for the command and `memtrace-SUB.1` for each visible
/// subcommand (and `memtrace-swap-SUB.1` for nested ones), as (file name, roff) pairs.
pub fn man_pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    fn render(
        command: clap::Command,
        name: String,
        out: &mut Vec<(String, Vec<u8>)>,
    ) -> std::io::Result<()> {
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone().name(name.clone())).render(&mut page)?;
        out.push((format!("{name}.1"), page));
        let visible = |s: &&clap::Command| !s.is_hide_set() && s.get_name() != "help";
        for sub in command.get_subcommands().filter(visible) {
            render(sub.clone(), format!("{name}-{}", sub.get_name()), out)?;
        }
        Ok(())
    }
    let mut command = <Cli as clap::CommandFactory>::command();
    command.build();
    let mut out = Vec::new();
    render(command, "memtrace".to_owned(), &mut out)?;
    Ok(out)
}

/// Writes [`man_pages`] into `dir`; returns how many were written.
pub fn write_man_pages(dir: &std::path::Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let pages = man_pages()?;
    for (name, page) in &pages {
        std::fs::write(dir.join(name), page)?;
    }
    Ok(pages.len())
}

#[cfg(test)]
mod tests {
    //! The completions shipped in dist/ match the command line.
    use super::*;

    #[test]
    fn shipped_completions_are_current() {
        for (shell, shipped) in [
            (
                clap_complete::Shell::Bash,
                include_str!("../../dist/completions/memtrace.bash"),
            ),
            (
                clap_complete::Shell::Zsh,
                include_str!("../../dist/completions/memtrace.zsh"),
            ),
            (
                clap_complete::Shell::Fish,
                include_str!("../../dist/completions/memtrace.fish"),
            ),
        ] {
            assert!(
                completions(shell) == shipped.as_bytes(),
                "dist/completions for {shell} are stale: run `memtrace completions {shell} > dist/completions/memtrace.{shell}`"
            );
        }
    }

    #[test]
    fn man_pages_cover_every_visible_subcommand() {
        let pages = man_pages().expect("rendered");
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for expected in [
            "memtrace.1",
            "memtrace-guard.1",
            "memtrace-run.1",
            "memtrace-swap-setup.1",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(
            !names
                .iter()
                .any(|n| n.contains("demo-pipeline") || n.contains("man-pages"))
        );
        let (_, guard) = pages
            .iter()
            .find(|(n, _)| n == "memtrace-guard.1")
            .expect("guard page");
        let text = String::from_utf8_lossy(guard);
        assert!(
            text.contains(".TH memtrace-guard 1") && text.contains("\\-\\-dry\\-run"),
            "{text}"
        );
    }
}
