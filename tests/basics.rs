//! End-to-end tests of `memtrace swap`, `doctor` and `clean` through the built binary, as root:
//! a real swap file round trip (on the real disk, never /swapfile or /etc/fstab), and the
//! refusals (not root, too little disk on a loop-mounted 8 MiB ext4, tmpfs, a planted symlink
//! as a temp root). Then how output failures end: a closed or full stdout (a quiet 141 or one
//! error line, never a panic), an export or HTML report onto a full tmpfs (no partial file, the
//! old one kept), a `run`/`record` that fails to start (no trace file). Every swap file, mount
//! and directory is undone by a Drop guard even when an assertion fails.
mod support;

use support::{describe, text};

use std::{
    fs,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

/// No command here should take longer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
const NOBODY: u32 = 65534;

/// Runs a command to completion, killing it after [`COMMAND_TIMEOUT`].
fn run(command: &mut Command) -> Output {
    support::output_within(command, COMMAND_TIMEOUT)
}

/// [`run`] with stdout going to `stdout`.
fn run_to(command: &mut Command, stdout: Stdio) -> Output {
    support::output_to(command, stdout, COMMAND_TIMEOUT)
}

fn run_memtrace(args: &[&str]) -> Output {
    run(support::memtrace().args(args).env("RUST_LOG", "warn"))
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

/// `memtrace ARGS` with stdout on a pipe whose reader is already gone.
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    run_to(
        support::memtrace().args(args).env("RUST_LOG", "warn"),
        Stdio::from(writer),
    )
}

/// Commands that print, with the trace `report` reads.
fn printing_commands(trace: &str) -> Vec<Vec<String>> {
    let lists: [&[&str]; 8] = [
        &["status"],
        &["status", "--json"],
        &["swap", "status"],
        &["guard", "--print-config"],
        &["completions", "bash"],
        &["report", trace],
        &["report", trace, "--json"],
        &["doctor", "--json"],
    ];
    lists
        .iter()
        .map(|l| l.iter().map(|a| (*a).to_owned()).collect())
        .collect()
}

#[test]
fn closed_stdout_ends_quietly_with_the_sigpipe_status() {
    support::require_root();
    let scratch = Scratch::new("epipe");
    let trace = scratch.path("t.mtrace");
    support::synthetic_trace::synthetic(&trace, 30, 5, 2);
    for args in printing_commands(&trace.display().to_string()) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_into_closed_pipe(&args);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {}", describe(&out));
        assert!(out.stderr.is_empty(), "{args:?}: {}", describe(&out));
    }

    // The live loop: `memtrace top --json | head -c100`.
    let mut top = support::spawn(
        support::memtrace()
            .args(["top", "--json", "--interval", "100ms"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stdout = top.child_mut().stdout.take().expect("piped stdout");
    let mut first = [0u8; 100];
    std::io::Read::read_exact(&mut stdout, &mut first).expect("top printed 100 bytes");
    drop(stdout);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = top.exited() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            top.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = top.child_mut().stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("stderr");
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(141),
        "top after its reader left: {status:?}, stderr {stderr:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn full_stdout_is_one_error_line() {
    support::require_root();
    let scratch = Scratch::new("enospc");
    let trace = scratch.path("t.mtrace");
    support::synthetic_trace::synthetic(&trace, 30, 5, 2);
    for args in printing_commands(&trace.display().to_string()) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let full = fs::File::options()
            .write(true)
            .open("/dev/full")
            .expect("opening /dev/full");
        let out = run_to(
            support::memtrace().args(&args).env("RUST_LOG", "warn"),
            Stdio::from(full),
        );
        assert_ne!(
            out.status.code(),
            Some(101),
            "{args:?} panicked: {}",
            describe(&out)
        );
        assert_refused(&out, "writing to stdout: No space left on device");
    }
}

/// A tmpfs of `size` mounted at `mnt` (made here), unmounted on drop.
fn small_tmpfs(mnt: &Path, size: &str) -> MountGuard {
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

/// Fills the filesystem of `dir` up to the last byte with one file.
fn fill_up(dir: &Path) {
    let mut filler = fs::File::create(dir.join("filler")).expect("filler");
    let chunk = vec![0u8; 4096];
    loop {
        match std::io::Write::write(&mut filler, &chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.raw_os_error() == Some(28) => break,
            Err(err) => panic!("filling the tmpfs: {err}"),
        }
    }
}

use memtrace_testkit::files::entry_names as names;

#[test]
fn exports_and_html_reports_onto_a_full_disk_leave_no_partial_file() {
    support::require_root();
    let scratch = Scratch::new("fulldisk");
    let trace = scratch.path("t.mtrace");
    support::synthetic_trace::synthetic(&trace, 120, 10, 3);
    let trace_arg = trace.display().to_string();
    let mnt = scratch.path("mnt");
    let _mounted = small_tmpfs(&mnt, "1m");
    let old = mnt.join("out.jsonl");
    fs::write(&old, b"the old export\n").expect("write");
    fill_up(&mnt);

    let out_arg = old.display().to_string();
    let out = run_memtrace(&["export", &trace_arg, "-f", "jsonl", "-o", &out_arg]);
    assert_refused(&out, "No space left on device");
    let now = fs::read(&old).expect("read");
    assert!(
        now == b"the old export\n",
        "the old export was replaced by {} bytes",
        now.len()
    );
    let html = mnt.join("report.html");
    let html_arg = html.display().to_string();
    let out = run_memtrace(&["report", &trace_arg, "--html", &html_arg]);
    assert_refused(&out, "No space left on device");
    assert_eq!(
        names(&mnt),
        ["filler", "out.jsonl"],
        "no partial HTML report, no temporary file"
    );

    // With room again, both are written whole.
    fs::remove_file(mnt.join("filler")).expect("rm filler");
    let out = run_memtrace(&["export", &trace_arg, "-f", "jsonl", "-o", &out_arg]);
    assert!(out.status.success(), "{}", describe(&out));
    let exported = fs::read_to_string(&old).expect("read");
    assert!(
        exported.lines().count() > 120,
        "{} lines",
        exported.lines().count()
    );
    let out = run_memtrace(&["report", &trace_arg, "--html", &html_arg]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(fs::read_to_string(&html).expect("read").contains("</html>"));
    assert_eq!(names(&mnt), ["out.jsonl", "report.html"]);
}

#[test]
fn run_and_record_that_fail_to_start_leave_no_trace() {
    support::require_root();
    let scratch = Scratch::new("failedrun");
    let cases: [(&str, Vec<&str>); 3] = [
        ("run.mtrace", vec!["run", "--out"]),
        ("record.mtrace", vec!["record", "-o"]),
        ("attach.mtrace", vec!["record", "--pid", "4194305", "-o"]),
    ];
    for (name, prefix) in cases {
        let path = scratch.arg(name);
        let mut args = prefix.clone();
        args.push(&path);
        if !prefix.contains(&"--pid") {
            args.extend(["--", "/nonexistent/command"]);
        }
        let out = run_memtrace(&args);
        assert!(!out.status.success(), "{args:?}: {}", describe(&out));
        let stderr = text(&out.stderr);
        assert!(
            stderr.lines().any(|l| l.starts_with("memtrace: error: ")),
            "{args:?}: {}",
            describe(&out)
        );
        assert!(
            !Path::new(&path).exists(),
            "{args:?} left a trace behind: {}",
            describe(&out)
        );
    }
}
