//! Shared helpers of the privileged integration tests: the memtrace binary, a running
//! `memtrace top --json` whose snapshots arrive on a channel, children killed by PID on drop,
//! and memory cgroups with a limit (v1 or v2) removed on drop.
#![allow(dead_code)]

pub mod cgroup;
pub mod guard_env;

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, channel},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Path of the memtrace binary cargo built for these tests.
pub const MEMTRACE: &str = env!("CARGO_BIN_EXE_memtrace");

/// Panics with a clear message unless running as root (CI runs `cargo xtask test` as root).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "privileged integration tests must run as root (use `cargo xtask test`)"
    );
}

/// A child process that is killed (by its PID) and reaped when dropped.
pub struct Guarded(pub Child);

impl Guarded {
    /// Spawns `cmd`.
    pub fn spawn(cmd: &mut Command) -> Self {
        Self(
            cmd.spawn()
                .unwrap_or_else(|err| panic!("spawning {cmd:?}: {err}")),
        )
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `memtrace top --json`; each stdout line (one snapshot) arrives parsed.
pub struct TopRun {
    child: Guarded,
    lines: Receiver<Vec<Value>>,
}

impl TopRun {
    /// Starts `memtrace top --json --interval INTERVAL EXTRA…` and waits for its first snapshot
    /// (the programs are attached by then).
    pub fn start(interval: &str, extra: &[&str]) -> Self {
        let mut child = Guarded::spawn(
            Command::new(MEMTRACE)
                .args(["top", "--json", "--interval", interval])
                .args(extra)
                .stdout(Stdio::piped()),
        );
        let stdout = child.0.stdout.take().expect("piped stdout");
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
pub fn wait_for_line(child: &mut Guarded, marker: &str, timeout: Duration) {
    let stdout = child.0.stdout.take().expect("piped stdout");
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
