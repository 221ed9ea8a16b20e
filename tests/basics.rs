//! End-to-end tests of `memtrace swap`, `doctor` and `clean` through the built binary, as root:
//! a real swap file round trip (on the real disk, never /swapfile or /etc/fstab), and the
//! refusals (not root, too little disk on a loop-mounted 8 MiB ext4, tmpfs, a planted symlink
//! as a temp root); how output failures end is `output_failures.rs`. Every swap file, mount and
//! directory is undone by a Drop guard even when an assertion fails.
mod support;

use support::{
    cli::{MountGuard, Scratch, assert_refused, run, run_memtrace, small_tmpfs},
    describe, text,
};

use std::{
    fs,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

const NOBODY: u32 = 65534;

/// Swaps off and deletes a swap file on drop, whatever happened.
struct SwapGuard(PathBuf);

impl Drop for SwapGuard {
    fn drop(&mut self) {
        // The swapoff(2) memtrace itself uses; failure (not active) is fine.
        let _ = memtrace_host::swap::file::swapoff(&self.0);
        let _ = fs::remove_file(&self.0);
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
    let _mounted = small_tmpfs(&mnt, "16m");
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
        &scratch.dir().display().to_string(),
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

/// Sets a file's (or directory's) access and modification times `age` in the past.
fn age(path: &Path, age: Duration) {
    let when = std::time::SystemTime::now() - age;
    let times = fs::FileTimes::new().set_accessed(when).set_modified(when);
    fs::File::open(path)
        .and_then(|f| f.set_times(times))
        .unwrap_or_else(|err| panic!("setting the times of {}: {err}", path.display()));
}

#[test]
fn clean_refuses_a_planted_symlink_even_with_a_trailing_slash() {
    support::require_root();
    let scratch = Scratch::new("cleanlink");
    let target = scratch.path("target");
    fs::create_dir(&target).expect("mkdir");
    let precious = target.join("precious");
    fs::write(&precious, b"keep me").expect("write");
    age(&precious, Duration::from_secs(7200));
    let link = scratch.path("link");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    for given in [format!("{}/", link.display()), link.display().to_string()] {
        let out = run_memtrace(&["clean", "--temp", &given, "--older-than", "1m"]);
        assert_refused(&out, "is a symlink");
        assert!(precious.exists(), "{given}: the link's target was followed");
    }
    for system in ["/tmp/..", "/etc", "/etc/", "/var"] {
        let out = run_memtrace(&["clean", "--dry-run", "--temp", system, "--older-than", "1h"]);
        assert_refused(&out, system.trim_end_matches('/'));
    }
}
