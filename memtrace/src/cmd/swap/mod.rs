//! `memtrace swap status|setup|remove`: show swap against the recommendation for this RAM,
//! create and enable a swap file (idempotently, cleaning up after any failure), and undo it.
//!
//! In a container `setup` refuses before touching anything, with the reason and the
//! alternative ([`container_refusal`]): swapon needs CAP_SYS_ADMIN in the host's user
//! namespace, and swap enabled from inside would be the host's, usable by the container only up
//! to its cgroup's `memory.swap.max`.
pub mod status;

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;

use crate::{
    collect::scope::{ScopeArgs, Selected},
    host::{
        privilege::{self, Capability, is_root},
        swap::{
            active as proc_swaps,
            file::{self as swapfile, SwapError},
            fs as swap_fs, fstab,
        },
        units::human_bytes,
    },
};

/// The smallest swap file `setup` makes.
const MIN_SIZE: u64 = 1 << 20;

/// Raw arguments of `memtrace swap`.
#[derive(Debug, clap::Args)]
pub struct SwapArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SwapCommand,
}

/// The `swap` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SwapCommand {
    /// Active swap, its use, and the recommendation for this much RAM (no root needed).
    Status(SwapStatusArgs),
    /// Create and enable a swap file (root). Running it again is a no-op.
    Setup(SetupArgs),
    /// Disable and delete a swap file and its fstab line (root).
    Remove(RemoveArgs),
}

/// Raw arguments of `swap status`.
#[derive(Debug, clap::Args)]
pub struct SwapStatusArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Which memory counts: the machine, a cgroup, or (default) the container memtrace runs in.
    #[command(flatten)]
    pub scope: ScopeArgs,
}

/// Raw arguments of `swap setup`.
#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// Size of the swap file: 16G, 512MiB, 64M, … (binary units).
    #[arg(value_name = "SIZE", default_value = "16G")]
    pub size: String,
    /// Where the swap file goes.
    #[arg(long, value_name = "P", default_value = "/swapfile")]
    pub path: PathBuf,
    /// Also add a line to /etc/fstab so the swap file is enabled at boot (idempotent).
    #[arg(long)]
    pub persist: bool,
    /// Run the checks and say what would be done, change nothing (no root needed).
    #[arg(long)]
    pub dry_run: bool,
    /// Set swap up for the whole machine even though memtrace runs in a memory-limited cgroup
    /// (a privileged container that may change the host).
    #[arg(long)]
    pub machine: bool,
    /// The fstab to edit (for tests).
    #[arg(long, hide = true, default_value = fstab::DEFAULT_FSTAB)]
    pub fstab: PathBuf,
}

/// Raw arguments of `swap remove`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The swap file to remove.
    #[arg(long, value_name = "P", default_value = "/swapfile")]
    pub path: PathBuf,
    /// The fstab to edit (for tests).
    #[arg(long, hide = true, default_value = fstab::DEFAULT_FSTAB)]
    pub fstab: PathBuf,
}

/// `swap setup`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupConfig {
    /// Bytes, a whole number of pages.
    pub size_bytes: u64,
    /// The file as typed.
    pub path: PathBuf,
    /// Add the fstab line.
    pub persist: bool,
    /// Change nothing.
    pub dry_run: bool,
    /// Even inside a memory-limited cgroup.
    pub machine: bool,
    /// The fstab to edit.
    pub fstab: PathBuf,
}

impl TryFrom<SetupArgs> for SetupConfig {
    type Error = anyhow::Error;

    fn try_from(args: SetupArgs) -> anyhow::Result<Self> {
        let size = crate::host::units::parse_size(&args.size)?;
        anyhow::ensure!(
            size >= MIN_SIZE,
            "swap size {} is below the 1 MiB minimum",
            args.size
        );
        Ok(Self {
            size_bytes: size.div_ceil(4096).saturating_mul(4096),
            path: args.path,
            persist: args.persist,
            dry_run: args.dry_run,
            machine: args.machine,
            fstab: args.fstab,
        })
    }
}

/// Runs `memtrace swap …`.
pub fn run(args: SwapArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SwapCommand::Status(args) => {
            status::print(args.json, &args.scope.select(Path::new("/proc"))?)
        }
        SwapCommand::Setup(args) => setup(&SetupConfig::try_from(args)?),
        SwapCommand::Remove(args) => remove(&args.path, &args.fstab),
    }
}

/// Why `swap setup` cannot or must not run here, in one line with the alternative, or `None`:
/// `can_swapon` is false for root without CAP_SYS_ADMIN in the host's user namespace (a
/// container); `container` describes the container's limit when memtrace runs in one (and
/// `--machine` was not given).
pub fn container_refusal(can_swapon: bool, container: Option<&str>) -> Option<String> {
    const INSTEAD: &str = "set swap up on the host (`memtrace swap setup` there) or ask the \
         provider, and let the container use it with memory.swap.max (v1: \
         memory.memsw.limit_in_bytes)";
    if !can_swapon {
        return Some(format!(
            "swap setup cannot work here: swapon needs CAP_SYS_ADMIN in the host's user \
             namespace, which this process does not have (root in a container); {INSTEAD}"
        ));
    }
    container.map(|limit| {
        format!(
            "memtrace runs in a container ({limit}): swap set up from here would be the \
             host's, and the container may use it only up to its memory.swap.max; {INSTEAD} \
             (or pass --machine to set it up for the whole machine anyway)"
        )
    })
}

/// Creates and enables a swap file (see [`SetupConfig`]).
fn setup(config: &SetupConfig) -> anyhow::Result<ExitCode> {
    if !config.dry_run && !is_root() {
        return Err(SwapError::NotRoot("swap setup").into());
    }
    let proc_root = Path::new("/proc");
    let selected: Selected = ScopeArgs {
        machine: config.machine,
        cgroup: None,
    }
    .select(proc_root)?;
    // Only root can lack a capability that matters here: a user's dry run on a host is fine.
    let can_swapon =
        !is_root() || privilege::has_machine_capability(proc_root, Capability::SysAdmin);
    let limit = selected.in_container().then(|| {
        let usage = selected.scope.usage(proc_root).ok();
        selected.describe(usage.as_ref())
    });
    if let Some(reason) = container_refusal(can_swapon, limit.as_deref()) {
        anyhow::bail!(reason);
    }
    let path = proc_swaps::resolve(&config.path)?;
    let shown = path.display();
    let size = human_bytes(config.size_bytes);
    let prefix = if config.dry_run {
        "dry run: would "
    } else {
        ""
    };
    let devices = proc_swaps::read_swaps(Path::new("/proc"))?;
    if let Some(active) = devices.iter().find(|d| Path::new(&d.path) == path) {
        crate::outln!(
            "{shown} is already active swap ({}); nothing to do",
            human_bytes(active.size_bytes)
        )?;
        return persist(config, &path).map(|()| ExitCode::SUCCESS);
    }
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() && swapfile::has_swap_signature(&path)? => {
            crate::outln!(
                "{shown} exists ({}) and is already a swap file; {prefix}enable it (size {size} not applied)",
                human_bytes(meta.len())
            )?;
            if !config.dry_run {
                swapfile::swapon(&path)?;
                crate::outln!("swapon {shown}: ok")?;
            }
            return persist(config, &path).map(|()| ExitCode::SUCCESS);
        }
        Ok(_) => return Err(SwapError::NotSwapFile(shown.to_string()).into()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("checking {shown}")),
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let fs_kind = swap_fs::filesystem_of(dir)?;
    swap_fs::check_filesystem(dir, fs_kind)?;
    let available = swap_fs::check_space(dir, config.size_bytes)?;
    swapfile::find_tool("mkswap").ok_or(SwapError::ToolMissing("mkswap"))?;
    crate::outln!(
        "checks passed: {}, {} filesystem, {} free",
        if is_root() {
            "root"
        } else {
            "not root (the real run needs it)"
        },
        fs_kind.name,
        human_bytes(available)
    )?;
    if config.dry_run {
        crate::outln!(
            "dry run: would create {shown} ({size}, mode 0600), mkswap it and swapon it"
        )?;
        return persist(config, &path).map(|()| ExitCode::SUCCESS);
    }
    let mut file = swapfile::create(&path, config.size_bytes, fs_kind)?;
    crate::outln!("created {shown} ({size}, mode 0600)")?;
    file.mkswap()?;
    crate::outln!("mkswap {shown}: ok")?;
    file.enable()?;
    crate::outln!("swapon {shown}: ok")?;
    // A failed fstab edit drops the guard, which swaps off and deletes the file.
    persist(config, &path)?;
    file.commit();
    let total: u64 = proc_swaps::read_swaps(Path::new("/proc"))?
        .iter()
        .map(|d| d.size_bytes)
        .sum();
    crate::outln!("swap is now {} in total", human_bytes(total))?;
    Ok(ExitCode::SUCCESS)
}

/// The fstab part of setup: adds the line with --persist, otherwise says it is not persistent.
fn persist(config: &SetupConfig, path: &Path) -> anyhow::Result<()> {
    let fstab_path = config.fstab.display();
    let line = fstab::line_for(path);
    if !config.persist {
        let present = fstab::has_entry(&fstab::read(&config.fstab)?, path);
        if !present {
            crate::outln!("not persistent: add --persist to enable it at boot via {fstab_path}")?;
        }
        return Ok(());
    }
    if config.dry_run {
        let present = fstab::has_entry(&fstab::read(&config.fstab)?, path);
        let what = if present { "already has" } else { "would get" };
        crate::outln!("dry run: {fstab_path} {what} {line:?}")?;
    } else if fstab::ensure_entry(&config.fstab, path)? {
        crate::outln!("{fstab_path}: added {line:?}")?;
    } else {
        crate::outln!(
            "{fstab_path}: already has an entry for {}; unchanged",
            path.display()
        )?;
    }
    Ok(())
}

fn remove(path: &Path, fstab_path: &Path) -> anyhow::Result<ExitCode> {
    if !is_root() {
        return Err(SwapError::NotRoot("swap remove").into());
    }
    let path = proc_swaps::resolve(path)?;
    let shown = path.display();
    let active = proc_swaps::is_active(&proc_swaps::read_swaps(Path::new("/proc"))?, &path);
    // Check before changing anything: never delete a file that is not swap.
    let exists = match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() && swapfile::has_swap_signature(&path)? => true,
        Ok(_) => return Err(SwapError::NotSwapFile(shown.to_string()).into()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => false,
        Err(err) => return Err(err).with_context(|| format!("checking {shown}")),
    };
    if active {
        swapfile::swapoff(&path)?;
        crate::outln!("swapoff {shown}: ok")?;
    }
    if exists {
        fs::remove_file(&path).with_context(|| format!("deleting {shown}"))?;
        crate::outln!("deleted {shown}")?;
    }
    let removed = fstab::remove_entry(fstab_path, &path)?;
    if removed > 0 {
        crate::outln!(
            "{}: removed {removed} line(s) for {shown}",
            fstab_path.display()
        )?;
    }
    if !active && !exists && removed == 0 {
        crate::outln!(
            "nothing to do: {shown} is not active swap, does not exist and is not in {}",
            fstab_path.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    //! Argument validation.
    use super::*;

    fn args(size: &str) -> SetupArgs {
        SetupArgs {
            size: size.to_owned(),
            path: PathBuf::from("/swapfile"),
            persist: false,
            dry_run: true,
            machine: false,
            fstab: PathBuf::from("/nonexistent/fstab"),
        }
    }

    #[test]
    fn setup_args_validate() {
        let config = SetupConfig::try_from(args("16G")).expect("valid");
        assert_eq!(config.size_bytes, 16 << 30);
        assert_eq!(
            SetupConfig::try_from(args("5000"))
                .map(|c| c.size_bytes)
                .ok(),
            None
        );
        assert_eq!(
            SetupConfig::try_from(args("2000001"))
                .map(|c| c.size_bytes)
                .ok(),
            Some(2_002_944),
            "rounded up to whole pages"
        );
        let err = SetupConfig::try_from(args("16X"))
            .err()
            .map(|e| e.to_string());
        assert!(err.unwrap_or_default().starts_with("invalid size"));
    }

    #[test]
    fn setup_in_a_container_refuses_with_the_reason_and_the_alternative() {
        let no_caps = container_refusal(false, Some("container limit 640.0 MiB")).expect("refused");
        assert!(
            no_caps.contains("swapon needs CAP_SYS_ADMIN in the host's user namespace")
                && no_caps.contains("on the host")
                && no_caps.contains("ask the provider")
                && no_caps.contains("memory.swap.max"),
            "{no_caps}"
        );
        let privileged =
            container_refusal(true, Some("container limit 640.0 MiB")).expect("refused");
        assert!(
            privileged.contains("container limit 640.0 MiB")
                && privileged.contains("only up to its memory.swap.max")
                && privileged.contains("--machine"),
            "{privileged}"
        );
        for line in [&no_caps, &privileged] {
            assert!(!line.contains('\n'), "one line: {line}");
        }
        assert_eq!(
            container_refusal(true, None),
            None,
            "a host with the capability"
        );
    }
}
