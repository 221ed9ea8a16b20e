//! End-to-end tests of `memtrace swap`, `doctor` and `clean` through the built binary, as root:
//! a real swap file round trip (on the real disk, never /swapfile or /etc/fstab), and the
//! refusals (not root, too little disk on a loop-mounted 8 MiB ext4, tmpfs). Every swap file,
//! mount and directory is undone by a Drop guard even when an assertion fails.
mod support;

use std::{
    fs,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use memtrace_testkit::child::kill_pid;

/// No command here should take longer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
const NOBODY: u32 = 65534;

/// Runs a command to completion, killing it after [`COMMAND_TIMEOUT`].
fn run(command: &mut Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("spawning {command:?}: {err}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(output) => output.unwrap_or_else(|err| panic!("waiting for {pid}: {err}")),
        Err(_) => {
            // pid is our own child, not yet reaped (the waiting thread still holds it).
            kill_pid(pid);
            panic!("{command:?} took longer than {COMMAND_TIMEOUT:?}");
        }
    }
}

fn run_memtrace(args: &[&str]) -> Output {
    run(support::memtrace().args(args).env("RUST_LOG", "warn"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// Asserts failure with exactly one stderr line containing `needle`.
fn assert_refused(output: &Output, needle: &str) {
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
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
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
    fn for_everyone(name: &str) -> Self {
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

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Swaps off and deletes a swap file on drop, whatever happened.
struct SwapGuard(PathBuf);

impl Drop for SwapGuard {
    fn drop(&mut self) {
        // The swapoff(2) memtrace itself uses; failure (not active) is fine.
        let _ = memtrace_host::swap::file::swapoff(&self.0);
        let _ = fs::remove_file(&self.0);
    }
}

/// Unmounts on drop (lazily if busy).
struct MountGuard(PathBuf);

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

fn active_swaps() -> String {
    fs::read_to_string("/proc/swaps").expect("reading /proc/swaps")
}

#[test]
fn swap_setup_status_noop_remove_round_trip() {
    support::require_root();
    let scratch = Scratch::new("roundtrip");
    let swap = scratch.arg("swapfile");
    let fstab = scratch.arg("fstab");
    let original_fstab = "# test fstab\nUUID=abc / ext4 defaults 0 1\n";
    fs::write(&fstab, original_fstab).expect("writing the test fstab");
    let _guard = SwapGuard(scratch.path("swapfile"));

    let first = run_memtrace(&[
        "swap",
        "setup",
        "64M",
        "--path",
        &swap,
        "--persist",
        "--fstab",
        &fstab,
    ]);
    assert!(first.status.success(), "{}", describe(&first));
    assert!(
        text(&first.stdout).contains(&format!("swapon {swap}: ok")),
        "{}",
        describe(&first)
    );
    assert!(active_swaps().contains(&swap), "active after setup");
    let mode = fs::metadata(&swap)
        .expect("swap file exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let line = format!("{swap} none swap sw 0 0\n");
    assert_eq!(
        fs::read_to_string(&fstab).expect("fstab"),
        format!("{original_fstab}{line}")
    );

    let status = run_memtrace(&["swap", "status", "--json"]);
    assert!(status.status.success(), "{}", describe(&status));
    let json: serde_json::Value =
        serde_json::from_slice(&status.stdout).expect("status --json is JSON");
    let device = json["devices"]
        .as_array()
        .and_then(|devices| devices.iter().find(|d| d["path"] == swap.as_str()))
        .unwrap_or_else(|| panic!("{swap} missing from {json}"));
    let size = device["size_bytes"].as_u64().expect("size_bytes");
    assert!((63 << 20..=64 << 20).contains(&size), "size {size}");
    assert!(json["recommendation"]["minimum_bytes"].as_u64().is_some());
    assert!(json["rule"].as_str().is_some_and(|r| r.contains("32 GiB")));

    let second = run_memtrace(&[
        "swap",
        "setup",
        "64M",
        "--path",
        &swap,
        "--persist",
        "--fstab",
        &fstab,
    ]);
    assert!(second.status.success(), "{}", describe(&second));
    assert!(
        text(&second.stdout).contains("nothing to do"),
        "{}",
        describe(&second)
    );
    assert_eq!(
        fs::read_to_string(&fstab)
            .expect("fstab")
            .matches(&line)
            .count(),
        1
    );

    let removed = run_memtrace(&["swap", "remove", "--path", &swap, "--fstab", &fstab]);
    assert!(removed.status.success(), "{}", describe(&removed));
    assert!(!active_swaps().contains(&swap), "inactive after remove");
    assert!(!Path::new(&swap).exists(), "deleted by remove");
    assert_eq!(fs::read_to_string(&fstab).expect("fstab"), original_fstab);

    let again = run_memtrace(&["swap", "remove", "--path", &swap, "--fstab", &fstab]);
    assert!(again.status.success(), "{}", describe(&again));
    assert!(
        text(&again.stdout).contains("nothing to do"),
        "{}",
        describe(&again)
    );
}

#[test]
fn refuses_without_root() {
    support::require_root();
    let scratch = Scratch::for_everyone("nonroot");
    let swap = scratch.arg("swapfile");
    let as_nobody = |args: &[&str]| {
        run(support::memtrace_as(NOBODY)
            .args(args)
            .env("RUST_LOG", "warn"))
    };
    assert_refused(
        &as_nobody(&["swap", "setup", "64M", "--path", &swap]),
        "must be run as root",
    );
    assert!(!Path::new(&swap).exists(), "nothing created");
    assert_refused(
        &as_nobody(&["swap", "remove", "--path", &swap]),
        "must be run as root",
    );
    assert_refused(&as_nobody(&["doctor", "--apply"]), "must be run as root");
    assert_refused(
        &as_nobody(&["clean", "--drop-caches"]),
        "must be run as root",
    );
    // A dry run needs no root and changes nothing.
    let dry = as_nobody(&["swap", "setup", "64M", "--path", &swap, "--dry-run"]);
    assert!(dry.status.success(), "{}", describe(&dry));
    assert!(
        text(&dry.stdout).contains("dry run: would create"),
        "{}",
        describe(&dry)
    );
    assert!(!Path::new(&swap).exists(), "nothing created by a dry run");
}

/// A checkout under a 0700 directory (`/root`, `mktemp -d`): a process that dropped privileges
/// cannot even start the binary built there, yet the tests that drop privileges pass, because
/// they run the copy every user can reach (and give it scratch space outside the checkout).
/// Runs `refuses_without_root` (this file's test executable, filtered) against a binary in such
/// a directory.
#[test]
fn tests_that_drop_privileges_pass_from_a_private_checkout() {
    support::require_root();
    let private = tempfile::Builder::new()
        .prefix("memtrace-private-")
        .tempdir()
        .expect("a private directory");
    fs::set_permissions(private.path(), fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    let built = private.path().join("memtrace/target/debug/memtrace");
    fs::create_dir_all(built.parent().expect("parent")).expect("the checkout's target dir");
    fs::copy(support::memtrace_bin(), &built).expect("the binary in the checkout");
    let direct = Command::new(&built)
        .arg("--version")
        .uid(NOBODY)
        .gid(NOBODY)
        .output();
    assert_eq!(
        direct.as_ref().err().map(std::io::Error::kind),
        Some(std::io::ErrorKind::PermissionDenied),
        "nobody cannot start {} directly: {direct:?}",
        built.display()
    );
    let me = std::env::current_exe().expect("this test executable");
    let inner = run(Command::new(me)
        .args(["refuses_without_root", "--exact", "--test-threads=1"])
        .env("MEMTRACE_BIN", &built));
    assert!(inner.status.success(), "{}", describe(&inner));
    assert!(
        text(&inner.stdout).contains("1 passed"),
        "{}",
        describe(&inner)
    );
}

#[test]
fn refuses_when_the_disk_is_too_small() {
    support::require_root();
    let scratch = Scratch::new("smalldisk");
    let image = scratch.path("img");
    fs::File::create(&image)
        .and_then(|f| f.set_len(8 << 20))
        .expect("creating the 8 MiB image");
    let mkfs = Command::new("mkfs.ext4")
        .arg("-q")
        .arg("-F")
        .arg(&image)
        .output();
    match mkfs {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "mkfs.ext4 failed, cannot test the small-disk refusal: {}",
            describe(&out)
        ),
        Err(err) => panic!(
            "mkfs.ext4 is not available (install e2fsprogs), cannot test the small-disk refusal: {err}"
        ),
    }
    let mnt = scratch.path("mnt");
    fs::create_dir(&mnt).expect("mkdir mnt");
    let mount = run(Command::new("mount")
        .arg("-o")
        .arg("loop")
        .arg(&image)
        .arg(&mnt));
    assert!(
        mount.status.success(),
        "loop devices unavailable, cannot test the small-disk refusal: {}",
        describe(&mount)
    );
    let _mounted = MountGuard(mnt.clone());
    let swap = mnt.join("swapfile");
    let _guard = SwapGuard(swap.clone());
    let swap_arg = swap.display().to_string();
    let out = run_memtrace(&["swap", "setup", "64M", "--path", &swap_arg]);
    assert_refused(&out, "not enough free disk space");
    assert!(!swap.exists(), "nothing left behind");
}

#[test]
fn refuses_tmpfs() {
    support::require_root();
    let scratch = Scratch::new("tmpfs");
    let mnt = scratch.path("tmpfs");
    fs::create_dir(&mnt).expect("mkdir");
    let mount = run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&mnt));
    assert!(
        mount.status.success(),
        "mounting tmpfs failed: {}",
        describe(&mount)
    );
    let _mounted = MountGuard(mnt.clone());
    let swap = mnt.join("swapfile");
    let _guard = SwapGuard(swap.clone());
    let out = run_memtrace(&["swap", "setup", "8M", "--path", &swap.display().to_string()]);
    assert_refused(&out, "not supported on tmpfs");
    assert!(!swap.exists(), "nothing left behind");
}

#[test]
fn doctor_and_clean_dry_run_report() {
    support::require_root();
    let doctor = run_memtrace(&["doctor", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&doctor.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", describe(&doctor)));
    let checks = json["checks"].as_array().expect("checks");
    assert!(checks.len() >= 12, "{json}");
    let has_fail = checks.iter().any(|c| c["level"] == "FAIL");
    assert_eq!(
        doctor.status.success(),
        !has_fail,
        "exit status follows FAIL: {}",
        describe(&doctor)
    );

    let scratch = Scratch::new("clean");
    fs::write(scratch.path("fresh"), b"x").expect("write");
    let out = run_memtrace(&[
        "clean",
        "--dry-run",
        "--temp",
        &scratch.0.display().to_string(),
        "--older-than",
        "1h",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("would delete 0 file(s)") && stdout.contains("kept 1 recent"),
        "{stdout}"
    );
    assert!(scratch.path("fresh").exists());
}
