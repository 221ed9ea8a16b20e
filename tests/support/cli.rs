//! Running the built binary as a user would, for the end-to-end tests of the CLI: within a
//! time limit, a refusal being exactly one `memtrace: error:` line; scratch directories on the
//! real disk and tmpfs mounts, both undone on drop even when an assertion fails.
use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use super::{describe, text};

/// No command here should take longer.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a command to completion, killing it after [`COMMAND_TIMEOUT`].
pub fn run(command: &mut Command) -> Output {
    super::output_within(command, COMMAND_TIMEOUT)
}

/// [`run`] with stdout going to `stdout`.
pub fn run_to(command: &mut Command, stdout: Stdio) -> Output {
    super::output_to(command, stdout, COMMAND_TIMEOUT)
}

pub fn run_memtrace(args: &[&str]) -> Output {
    run(super::memtrace().args(args).env("RUST_LOG", "warn"))
}

/// Asserts failure with exactly one stderr line containing `needle`.
pub fn assert_refused(output: &Output, needle: &str) {
    assert!(
        !output.status.success(),
        "expected a refusal: {}",
        describe(output)
    );
    let stderr = text(&output.stderr);
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "one clear line expected: {}",
        describe(output)
    );
    assert!(
        lines[0].starts_with("memtrace: error: "),
        "{}",
        describe(output)
    );
    assert!(
        lines[0].contains(needle),
        "expected {needle:?}: {}",
        describe(output)
    );
}

/// A directory on the real disk (under cargo's target tmp dir), removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("basics-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating the scratch dir");
        // The unprivileged child must be able to look inside.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        Self(dir)
    }

    /// A directory a process that dropped privileges can look inside: under /var/tmp (on disk
    /// and traversable by every user), because cargo's target dir may lie in a checkout under a
    /// 0700 directory (`/root`, `mktemp -d`).
    pub fn for_everyone(name: &str) -> Self {
        let base = ["/var/tmp", "/tmp"]
            .into_iter()
            .map(Path::new)
            .find(|base| base.is_dir())
            .expect("/var/tmp or /tmp");
        let dir = tempfile::Builder::new()
            .prefix(&format!("memtrace-basics-{name}-"))
            .tempdir_in(base)
            .expect("creating the scratch dir")
            .keep();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        Self(dir)
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.0
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Unmounts on drop (lazily if busy).
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// A tmpfs of `size` mounted at `mnt` (made here), unmounted on drop.
pub fn small_tmpfs(mnt: &Path, size: &str) -> MountGuard {
    fs::create_dir(mnt).expect("mkdir");
    let mount = run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(mnt));
    assert!(
        mount.status.success(),
        "mounting tmpfs failed: {}",
        describe(&mount)
    );
    MountGuard(mnt.to_path_buf())
}
