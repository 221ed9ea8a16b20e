//! `cargo xtask install [--prefix DIR] [--destdir DIR]`: builds the release binary and installs
//! what a host running the guard as a service needs — the binary, the systemd unit (its
//! `ExecStart` pointing at the installed binary), shell completions, the man pages, and the
//! guard's config (the embedded default, only where none exists yet). `--destdir` stages the
//! whole tree under another root (for packaging), as `make install DESTDIR=` does.
use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::{build, tools};

/// Options of `cargo xtask install`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Installation prefix.
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// Stage everything under this root instead of `/` (paths inside files stay `PREFIX/…`).
    #[arg(long)]
    pub destdir: Option<PathBuf>,
}

/// The files an installation writes, relative to the (staged) root.
#[derive(Debug, PartialEq, Eq)]
pub struct Layout {
    /// The binary.
    pub binary: PathBuf,
    /// The systemd unit.
    pub unit: PathBuf,
    /// bash, zsh and fish completions, with their shells.
    pub completions: Vec<(&'static str, PathBuf)>,
    /// The man page directory (section 1).
    pub man1: PathBuf,
    /// The guard's config (written only if absent).
    pub config: PathBuf,
}

impl Layout {
    /// Where things go under `prefix` (`/etc` stays `/etc`, as for any service).
    pub fn under(prefix: &Path) -> Self {
        let share = prefix.join("share");
        Self {
            binary: prefix.join("bin/memtrace"),
            unit: prefix.join("lib/systemd/system/memtrace-guard.service"),
            completions: vec![
                ("bash", share.join("bash-completion/completions/memtrace")),
                ("zsh", share.join("zsh/site-functions/_memtrace")),
                (
                    "fish",
                    share.join("fish/vendor_completions.d/memtrace.fish"),
                ),
            ],
            man1: share.join("man/man1"),
            config: PathBuf::from("/etc/memtrace/guard.toml"),
        }
    }
}

/// `path` under the staging root, if any.
fn staged(destdir: Option<&Path>, path: &Path) -> PathBuf {
    match destdir {
        Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
        None => path.to_path_buf(),
    }
}

/// The unit shipped in dist/, with `ExecStart` pointing at `binary`.
pub fn unit_for(shipped: &str, binary: &Path) -> String {
    shipped.replace("/usr/local/bin/memtrace", &binary.display().to_string())
}

fn write(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, data).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// Builds and installs.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let built = build::run(&build::Options { release: true })?;
    let prefix = &options.prefix;
    anyhow::ensure!(
        prefix.is_absolute(),
        "--prefix {} must be an absolute path",
        prefix.display()
    );
    let destdir = options.destdir.as_deref();
    let layout = Layout::under(prefix);
    let root = tools::workspace_root();
    let binary = fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    let binary_path = staged(destdir, &layout.binary);
    write(&binary_path, &binary, 0o755)?;
    let shipped = fs::read_to_string(root.join("dist/memtrace-guard.service"))
        .context("reading dist/memtrace-guard.service")?;
    write(
        &staged(destdir, &layout.unit),
        unit_for(&shipped, &layout.binary).as_bytes(),
        0o644,
    )?;
    for (shell, path) in &layout.completions {
        let text = fs::read(root.join(format!("dist/completions/memtrace.{shell}")))
            .with_context(|| format!("reading the {shell} completions"))?;
        write(&staged(destdir, path), &text, 0o644)?;
    }
    let man1 = staged(destdir, &layout.man1);
    tools::run_checked(
        Command::new(&binary_path).arg("man-pages").arg(&man1),
        "memtrace man-pages",
    )?;
    let config = staged(destdir, &layout.config);
    if config.exists() {
        eprintln!("xtask: kept the existing {}", config.display());
    } else {
        let default = tools::output_of(
            Command::new(&binary_path).args(["guard", "--print-config"]),
            "memtrace guard --print-config",
        )?;
        write(&config, default.as_bytes(), 0o644)?;
    }
    eprintln!(
        "xtask: installed {} (unit {}, man pages in {}); enable the guard with `systemctl daemon-reload && systemctl enable --now memtrace-guard`",
        binary_path.display(),
        staged(destdir, &layout.unit).display(),
        man1.display()
    );
    Ok(())
}

/// The install check of `cargo xtask test`: a staged installation under `target/`, every file
/// in place, and `systemd-analyze verify` on the unit where systemd-analyze exists (with its
/// `ExecStart` pointed at the staged binary, since nothing is installed for real).
pub fn check() -> anyhow::Result<()> {
    let stage = tools::workspace_root().join("target/install-check");
    let _ = fs::remove_dir_all(&stage);
    let prefix = PathBuf::from("/usr/local");
    run(&Options {
        prefix: prefix.clone(),
        destdir: Some(stage.clone()),
    })?;
    let layout = Layout::under(&prefix);
    let mut expected = vec![
        layout.binary.clone(),
        layout.unit.clone(),
        layout.config.clone(),
        layout.man1.join("memtrace.1"),
        layout.man1.join("memtrace-guard.1"),
    ];
    expected.extend(layout.completions.iter().map(|(_, path)| path.clone()));
    for path in &expected {
        let path = staged(Some(&stage), path);
        anyhow::ensure!(
            path.is_file(),
            "install check: {} is missing",
            path.display()
        );
    }
    let Ok(analyze) = which_systemd_analyze() else {
        eprintln!("xtask: install check: no systemd-analyze here, the unit was not verified");
        return Ok(());
    };
    let unit = fs::read_to_string(staged(Some(&stage), &layout.unit))
        .context("reading the installed unit")?;
    let verify_dir = stage.join("verify");
    let verify = verify_dir.join("memtrace-guard.service");
    write(
        &verify,
        unit.replace(
            &layout.binary.display().to_string(),
            &staged(Some(&stage), &layout.binary).display().to_string(),
        )
        .as_bytes(),
        0o644,
    )?;
    tools::run_checked(
        Command::new(analyze).arg("verify").arg(&verify),
        "systemd-analyze verify memtrace-guard.service",
    )?;
    eprintln!("xtask: install check: files in place, systemd-analyze verify passed");
    Ok(())
}

fn which_systemd_analyze() -> anyhow::Result<PathBuf> {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("systemd-analyze not found")
}

#[cfg(test)]
mod tests {
    //! Where an installation puts things, and the unit's ExecStart.
    use super::*;

    #[test]
    fn layout_and_staging() {
        let layout = Layout::under(Path::new("/opt/mt"));
        assert_eq!(layout.binary, Path::new("/opt/mt/bin/memtrace"));
        assert_eq!(
            layout.unit,
            Path::new("/opt/mt/lib/systemd/system/memtrace-guard.service")
        );
        assert_eq!(
            staged(Some(Path::new("/tmp/stage")), &layout.config),
            Path::new("/tmp/stage/etc/memtrace/guard.toml")
        );
        assert_eq!(staged(None, &layout.binary), layout.binary);
    }

    #[test]
    fn unit_points_at_the_installed_binary() {
        let shipped =
            std::fs::read_to_string(tools::workspace_root().join("dist/memtrace-guard.service"))
                .expect("the shipped unit");
        let unit = unit_for(&shipped, Path::new("/opt/mt/bin/memtrace"));
        assert!(unit.contains("ExecStart=/opt/mt/bin/memtrace guard"));
        assert!(!unit.contains("/usr/local/bin/memtrace"));
    }
}
