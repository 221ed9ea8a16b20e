//! `cargo xtask vm build | run`: a Debian bookworm guest (1 GiB RAM, no swap, 2 vCPUs) with
//! sshd, earlyoom and the memtrace built here, emulated by qemu (TCG: `/dev/kvm` on our machines
//! is no hardware virtualisation), reached over ssh through a loopback-only host forward. The
//! image is built once and cached under `target/vm/` (see [`image`]); every boot gets its own
//! copy-on-write overlay and key pair (see [`guest`]). `cargo xtask bench ssh` runs its
//! scenarios in it.
pub mod guest;
pub mod image;
mod image_config;

use std::time::{Duration, Instant};

/// The `vm` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build (or reuse) the cached guest image under target/vm/ and copy memtrace into it.
    Build {
        /// The guest kernel.
        #[arg(long, value_enum, default_value_t = image::Kernel::Stable)]
        kernel: image::Kernel,
    },
    /// Build, boot the guest, wait for sshd, time `ssh true` a few times, run a command, shut
    /// down.
    Run(RunOptions),
}

/// Options of `vm run`.
#[derive(Debug, clap::Args)]
pub struct RunOptions {
    /// The guest kernel.
    #[arg(long, value_enum, default_value_t = image::Kernel::Stable)]
    pub kernel: image::Kernel,
    /// Seconds to wait for sshd to answer after starting qemu.
    #[arg(long, default_value_t = 240)]
    pub boot_timeout: u64,
    /// Command to run in the guest over ssh after the `ssh true` probes.
    #[arg(long, default_value = "uname -a; free -m; memtrace --version")]
    pub command: String,
}

/// Runs one `vm` subcommand.
pub fn run(command: &Command) -> anyhow::Result<()> {
    crate::root::require("cargo xtask vm")?;
    match command {
        Command::Build { kernel } => image::build(*kernel).map(|_| ()),
        Command::Run(options) => run_once(options),
    }
}

fn run_once(options: &RunOptions) -> anyhow::Result<()> {
    let image = image::build(options.kernel)?;
    let start = Instant::now();
    let vm = guest::Guest::boot(&image, Duration::from_secs(options.boot_timeout))?;
    eprintln!(
        "xtask: guest answered ssh {:.1} s after qemu started (port {}, run dir {})",
        start.elapsed().as_secs_f64(),
        vm.port(),
        vm.dir().display()
    );
    for _ in 0..3 {
        let probe = vm.probe(Duration::from_secs(40));
        eprintln!("xtask: ssh true: {probe:?}");
    }
    let out = vm.ssh_output(&options.command, Duration::from_secs(60))?;
    println!("{out}");
    vm.shutdown(Duration::from_secs(30))
}
