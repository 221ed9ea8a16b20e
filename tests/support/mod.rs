//! Shared helpers of the privileged integration tests: the memtrace binary (and, for tests that
//! drop privileges, a copy of it every user can reach), running it as a user would ([`cli`]), a running `memtrace top --json` whose
//! snapshots arrive on a channel, a tmux pane for the interactive `top` ([`tmux`]), and thin
//! panicking adapters over the test kit's children killed on drop and limited memory cgroups.
#![allow(dead_code)]

pub mod alloc_after_mark;
pub mod cli;
pub mod guard_env;
pub mod http;
pub mod synthetic_trace;
pub mod tmux;

use std::{
    io::{BufRead as _, BufReader},
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        LazyLock, OnceLock,
        mpsc::{Receiver, channel},
    },
    time::{Duration, Instant},
};

pub use memtrace_testkit::{cgroup::TestCgroup, child::KillOnDrop};
use serde_json::Value;

/// The memtrace binary under test: `$MEMTRACE_BIN` (set by `cargo xtask test`), else the one
/// cargo built next to this test executable (`target/<profile>/memtrace`).
static MEMTRACE_BIN: LazyLock<PathBuf> = LazyLock::new(|| {
    let path = std::env::var_os("MEMTRACE_BIN").map_or_else(
        || {
            let exe = std::env::current_exe().expect("the test executable's path");
            // target/<profile>/deps/<test>-<hash> → target/<profile>/memtrace
            exe.parent()
                .and_then(Path::parent)
                .map(|profile| profile.join("memtrace"))
                .expect("the test executable lies in target/<profile>/deps")
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "no memtrace binary at {}: run these tests through `cargo xtask test` (or build it first with `cargo build -p memtrace`)",
        path.display()
    );
    path
});

/// Path of the memtrace binary under test.
pub fn memtrace_bin() -> &'static Path {
    &MEMTRACE_BIN
}

/// A command running the memtrace binary under test.
pub fn memtrace() -> Command {
    Command::new(memtrace_bin())
}

/// The directory holding [`FOR_EVERYONE`], removed when the test process exits.
static FOR_EVERYONE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The copy of the binary under test that any user can start, made on first use (once per test
/// process).
static FOR_EVERYONE: LazyLock<PathBuf> = LazyLock::new(|| {
    let (dir, copy) = copy_for_everyone(memtrace_bin());
    if FOR_EVERYONE_DIR.set(dir).is_ok() {
        // SAFETY: registers a plain `extern "C" fn()` that touches only a `OnceLock` set above;
        // atexit has no other preconditions.
        let registered = unsafe { libc::atexit(remove_for_everyone_dir) };
        assert_eq!(registered, 0, "atexit");
    }
    copy
});

extern "C" fn remove_for_everyone_dir() {
    if let Some(dir) = FOR_EVERYONE_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Copies `binary` into a new directory under /tmp that every user can traverse (0755, as is
/// the copy), so a process that dropped privileges can start it even when the checkout lies
/// under a 0700 directory (`/root`, `mktemp -d`). Returns the directory (the caller removes it)
/// and the copy.
pub fn copy_for_everyone(binary: &Path) -> (PathBuf, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("memtrace-tests-")
        .tempdir_in("/tmp")
        .expect("a directory for the binary under /tmp")
        .keep();
    let everyone = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(&dir, everyone.clone()).expect("chmod 0755");
    let copy = dir.join("memtrace");
    std::fs::copy(binary, &copy)
        .unwrap_or_else(|err| panic!("copying {} to {}: {err}", binary.display(), dir.display()));
    std::fs::set_permissions(&copy, everyone).expect("chmod 0755");
    for ancestor in copy.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor)
            .unwrap_or_else(|err| panic!("{}: {err}", ancestor.display()))
            .permissions()
            .mode();
        assert!(
            mode & 0o001 != 0,
            "{} (mode {mode:o}) is not traversable by other users",
            ancestor.display()
        );
    }
    (dir, copy)
}

/// A command running the memtrace binary under test as `uid` (group `uid` too, no supplementary
/// groups): the copy of it every user can start (see [`copy_for_everyone`]).
pub fn memtrace_as(uid: u32) -> Command {
    let mut cmd = Command::new(&*FOR_EVERYONE);
    cmd.uid(uid).gid(uid);
    cmd
}

/// Panics with a clear message unless running as root (CI runs `cargo xtask test` as root).
pub fn require_root() {
    assert!(
        memtrace_host::privilege::is_root(),
        "privileged integration tests must run as root (use `cargo xtask test`)"
    );
}

/// Spawns `cmd`, killed by PID and reaped when the result is dropped.
pub fn spawn(cmd: &mut Command) -> KillOnDrop {
    let what = format!("{cmd:?}");
    KillOnDrop::spawn(cmd, &what).unwrap_or_else(|err| panic!("{err:#}"))
}

/// Runs `cmd` to completion with its output captured (stdin closed), killing it (by PID) if it
/// takes longer than `limit`.
pub fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    output_to(cmd, Stdio::piped(), limit)
}

/// [`output_within`] with stdout going to `stdout` (a closed pipe, /dev/full, …).
pub fn output_to(cmd: &mut Command, stdout: Stdio, limit: Duration) -> std::process::Output {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("spawning {what}: {err}"));
    let pid = child.id();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.unwrap_or_else(|err| panic!("waiting for {what}: {err}")),
        Err(_) => {
            memtrace_testkit::child::kill_pid(pid);
            panic!("{what} did not finish within {limit:?}");
        }
    }
}

/// A memory cgroup `memtrace-test-NAME-PID` limited to `limit` bytes, removed on drop.
pub fn test_cgroup(name: &str, limit: u64) -> TestCgroup {
    TestCgroup::create(&format!("test-{name}"), limit).unwrap_or_else(|err| panic!("{err:#}"))
}

/// A running `memtrace top --json`; each stdout line (one snapshot) arrives parsed.
pub struct TopRun {
    child: KillOnDrop,
    lines: Receiver<Vec<Value>>,
}

impl TopRun {
    /// Starts `memtrace top --json --interval INTERVAL EXTRA…` and waits for its first snapshot
    /// (the programs are attached by then).
    pub fn start(interval: &str, extra: &[&str]) -> Self {
        let mut child = spawn(
            memtrace()
                .args(["top", "--json", "--interval", interval])
                .args(extra)
                .stdout(Stdio::piped()),
        );
        let stdout = child.child_mut().stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parsed: Vec<Value> = serde_json::from_str(&line)
                    .unwrap_or_else(|err| panic!("top printed non-JSON {line:?}: {err}"));
                if tx.send(parsed).is_err() {
                    break;
                }
            }
        });
        let run = Self { child, lines };
        run.next(Duration::from_secs(20))
            .expect("memtrace top printed no snapshot within 20 s");
        run
    }

    /// Forgets the snapshots printed so far: the next one read is printed after this call.
    pub fn skip_printed(&self) {
        while self.lines.try_recv().is_ok() {}
    }

    /// The next snapshot, or `None` after `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Vec<Value>> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Reads snapshots until `pick` finds something or `timeout` passes.
    pub fn find<T>(
        &self,
        timeout: Duration,
        mut pick: impl FnMut(&[Value]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let snapshot = self.next(left)?;
            if let Some(found) = pick(&snapshot) {
                return Some(found);
            }
        }
        None
    }

    /// memtrace's pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// The entry of `pid` in a snapshot (live or exited).
pub fn entry(snapshot: &[Value], pid: u32) -> Option<&Value> {
    snapshot
        .iter()
        .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
}

/// A u64 field of a snapshot entry (0 when absent).
pub fn field(entry: &Value, name: &str) -> u64 {
    entry[name].as_u64().unwrap_or(0)
}

/// `python3 -c CODE`, checked to exist.
pub fn python(code: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", code]);
    cmd
}

/// Waits until `child` prints a line containing `marker` on stdout (it must be piped).
pub fn wait_for_line(child: &mut KillOnDrop, marker: &str, timeout: Duration) {
    let stdout = child.child_mut().stdout.take().expect("piped stdout");
    let (tx, rx) = channel();
    let wanted = marker.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(&wanted) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("child never printed {marker:?}"));
}

/// MiB.
pub const MIB: u64 = 1 << 20;

/// Bytes a command printed, as text (lossy).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A command's exit status and both outputs, for an assertion message.
pub fn describe(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}
