//! Scenario pieces of the guard tests: Python holders and a growing pipeline started under
//! chosen command names inside a test cgroup, a running guard whose log is collected, a state
//! directory the guard trusts, and small waits on process states.
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use memtrace_testkit::child::signal_pid;
use rustix::process::Signal;

use super::{KillOnDrop, MIB, TestCgroup, memtrace, spawn, test_cgroup};

/// A Python process that renames itself, holds `mib` MiB and sleeps.
pub fn holder(comm: &str, mib: u64) -> String {
    format!(
        "import time\n\
         open('/proc/self/comm', 'w').write('{comm}')\n\
         b = bytearray({mib} << 20)\n\
         for i in range(0, len(b), 4096): b[i] = 1\n\
         print('ready', flush=True)\n\
         time.sleep(120)\n"
    )
}

/// A pipeline: a parent that starts a child growing `step` MiB every 25 ms up to `target` MiB.
pub fn pipeline(step: u64, target: u64) -> String {
    pipeline_named("grower", step, target)
}

/// [`pipeline`] whose growing child gives itself the command name `comm`.
pub fn pipeline_named(comm: &str, step: u64, target: u64) -> String {
    let child = format!(
        "import time\n\
         open('/proc/self/comm', 'w').write('{comm}')\n\
         chunks = []\n\
         while len(chunks) * {step} < {target}:\n\
         \x20   c = bytearray({step} << 20)\n\
         \x20   for i in range(0, len(c), 4096): c[i] = 1\n\
         \x20   chunks.append(c)\n\
         \x20   time.sleep(0.025)\n\
         print('grown', flush=True)\n\
         time.sleep(120)\n"
    );
    format!(
        "import subprocess, sys, time\n\
         open('/proc/self/comm', 'w').write('pipeline')\n\
         child = subprocess.Popen([sys.executable, '-c', {child:?}])\n\
         print('child', child.pid, flush=True)\n\
         child.wait()\n"
    )
}

/// Thresholds scaled for a small cgroup, fast sampling, no cache dropping (it is machine-wide);
/// the names `sshd` (the stand-in) and `ballast` protected. A held tree is resumed as soon as
/// the cgroup is calm (`resume_hold = "1ms"`, which the tests of `resume_hold` replace).
pub fn config(dir: &Path, extra: &str) -> PathBuf {
    config_protecting(dir, "guard", Some("^(sshd|ballast)$"), extra)
}

/// [`config`] named `name`, protecting the names `protected` matches (`None`: the default list).
pub fn config_protecting(dir: &Path, name: &str, protected: Option<&str>, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}-{}.toml", std::process::id()));
    let victims = protected.map_or_else(String::new, |regex| {
        format!("[victims]\nprotected = [\"{regex}\"]\n")
    });
    let text = format!(
        "[sampling]\ninterval_idle = \"200ms\"\ninterval_pressure = \"50ms\"\ngrowth_window = \"1s\"\n\
         [thresholds]\nresume_used_percent = 45\nwarn_used_percent = 50\nreclaim_used_percent = 55\n\
         suspend_used_percent = 65\nkill_used_percent = 95\nresume_after = \"1s\"\nresume_hold = \"1ms\"\n\
         [actions]\ndrop_caches = false\n\
         {victims}{extra}"
    );
    std::fs::write(&path, text).expect("writing the guard config");
    path
}

/// A state directory the guard trusts wherever the checkout lives: root-owned, 0700, under the
/// system's temp directory (the checkout's own `target/` may sit below a user's home). Removed
/// on drop.
pub fn state_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("memtrace-guard-state-")
        .tempdir()
        .expect("creating a state directory")
}

pub fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// A running guard whose log lines are collected.
pub struct GuardRun {
    /// The guard process.
    pub child: KillOnDrop,
    log: Arc<Mutex<Vec<String>>>,
}

impl GuardRun {
    pub fn start(cgroup: &Path, config: &Path, state: &Path, extra: &[&str]) -> Self {
        Self::spawn(
            memtrace()
                .args(["guard", "--cgroup"])
                .arg(cgroup)
                .arg("--config")
                .arg(config)
                .arg("--state-file")
                .arg(state)
                .args(extra),
        )
    }

    /// Starts `cmd` (a guard, however it is wrapped: it must exec it, so its pid is the
    /// guard's) and waits for its "guarding" line.
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = spawn(cmd.stderr(Stdio::piped()));
        let stderr = child.child_mut().stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("guard: {line}");
                if let Ok(mut log) = sink.lock() {
                    log.push(line);
                }
            }
        });
        let run = Self { child, log };
        assert!(
            run.wait_log("guarding", Duration::from_secs(20)),
            "the guard never started"
        );
        run
    }

    pub fn lines(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The first log line containing `needle`.
    pub fn line_with(&self, needle: &str) -> Option<String> {
        self.lines().into_iter().find(|l| l.contains(needle))
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.line_with(needle).is_some())
    }

    pub fn terminate(&mut self) {
        // Only the guard this test started.
        signal_pid(self.child.pid(), Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.child_mut().try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the guard did not exit within 10 s of SIGTERM");
    }
}

pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    done()
}

/// A python3 that runs under the command name `comm` from its very first instruction (exec
/// through a symlink named `comm`), so protection by name holds before the script starts.
pub fn python_as(comm: &str) -> String {
    let dir = tmp().join("as");
    let _ = std::fs::create_dir_all(&dir);
    let link = dir.join(comm);
    if !link.exists() {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys, os; print(os.path.realpath(sys.executable))",
            ])
            .output()
            .expect("python3 is needed by these tests");
        let real = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        std::os::unix::fs::symlink(real, &link).expect("symlinking python3");
    }
    link.display().to_string()
}

/// Starts `code` in the cgroup under command name `comm` and waits for its first line;
/// returns (process, first line).
pub fn start_in(group: &mut TestCgroup, comm: &str, code: &str) -> (KillOnDrop, String) {
    let program = python_as(comm);
    let mut child = spawn(
        group
            .command(&program, &["-c", code])
            .stdout(Stdio::piped()),
    );
    group.track(child.pid());
    let stdout = child.child_mut().stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the child's first line");
    (child, first)
}

pub struct Scenario {
    /// The cgroup.
    pub group: TestCgroup,
    /// 16 MiB, stable.
    pub chill: KillOnDrop,
    /// The protected stand-in.
    pub sshd: KillOnDrop,
    /// 128 MiB, protected; the test drops it to free memory.
    pub ballast: Option<KillOnDrop>,
}

/// Ballast (128 MiB, protected), chill (16 MiB) and an `sshd` stand-in in one 512 MiB cgroup.
pub fn scenario(name: &str) -> Scenario {
    let mut group = test_cgroup(name, 512 * MIB);
    let (ballast, _) = start_in(&mut group, "ballast", &holder("ballast", 128));
    let (chill, _) = start_in(&mut group, "chill", &holder("chill", 16));
    let (sshd, _) = start_in(&mut group, "sshd", &holder("sshd", 4));
    Scenario {
        group,
        chill,
        sshd,
        ballast: Some(ballast),
    }
}

/// Starts the pipeline (growing 4 MiB per 25 ms up to 240 MiB); returns (parent, grower pid).
pub fn start_pipeline(group: &mut TestCgroup) -> (KillOnDrop, u32) {
    let (parent, line) = start_in(group, "pipeline", &pipeline(4, 240));
    let grower = line
        .strip_prefix("child ")
        .and_then(|pid| pid.trim().parse().ok())
        .expect("the pipeline prints its child's pid");
    group.track(grower);
    (parent, grower)
}

/// Thresholds that cannot fire on a quiet cgroup.
pub fn config_calm(dir: &Path) -> PathBuf {
    let path = dir.join(format!("guard-calm-{}.toml", std::process::id()));
    std::fs::write(&path, "[thresholds]\nresume_used_percent = 97\nwarn_used_percent = 98\nreclaim_used_percent = 98\nsuspend_used_percent = 99\nkill_used_percent = 99.5\n").expect("config");
    path
}

/// The freezer cgroups the guard `guard` made (`memtrace-held-GUARD-…` at the v1 freezer's root).
pub fn held_cgroups(guard: u32) -> Vec<String> {
    held_below(Path::new("/sys/fs/cgroup/freezer"), &guard.to_string())
}

/// The `memtrace-held-GUARD-…` cgroups directly below `parent` (every guard's with `guard` "").
pub fn held_below(parent: &Path, guard: &str) -> Vec<String> {
    std::fs::read_dir(parent)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(&format!("memtrace-held-{guard}")))
                .collect()
        })
        .unwrap_or_default()
}

/// Thaws what the guard `.0` left frozen when a test fails (a task frozen by the v1 freezer
/// cannot die, so the test cgroup could not kill and remove it); dropped before the cgroup.
pub struct ThawOnDrop(pub u32);

impl Drop for ThawOnDrop {
    fn drop(&mut self) {
        for name in held_cgroups(self.0) {
            let dir = Path::new("/sys/fs/cgroup/freezer").join(name);
            let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
        }
    }
}

/// A Python hog to run from a shell in a tmux pane: it writes its pid to a file, grows in 4 MiB
/// steps every 25 ms until it holds `mib` MiB (unless held), then sleeps. Its files are removed
/// on drop.
pub struct PaneHog {
    /// The script.
    pub script: PathBuf,
    pid_file: PathBuf,
}

impl PaneHog {
    /// Writes the script (named after `tag` and this test process).
    pub fn write(tag: &str, mib: u64) -> Self {
        let id = std::process::id();
        let pid_file = tmp().join(format!("{tag}-hog-{id}.pid"));
        let _ = std::fs::remove_file(&pid_file);
        let script = tmp().join(format!("{tag}-hog-{id}.py"));
        std::fs::write(
            &script,
            format!(
                "import os, time\n\
                 open({pid_file:?}, 'w').write(str(os.getpid()))\n\
                 chunks = []\n\
                 while len(chunks) * 4 < {mib}:\n\
                 \x20   c = bytearray(4 << 20)\n\
                 \x20   for i in range(0, len(c), 4096): c[i] = 1\n\
                 \x20   chunks.append(c)\n\
                 \x20   time.sleep(0.025)\n\
                 time.sleep(120)\n",
                pid_file = pid_file.display().to_string()
            ),
        )
        .expect("writing the hog");
        Self { script, pid_file }
    }

    /// The command line a shell runs it with.
    pub fn command_line(&self) -> String {
        format!("python3 {}", self.script.display())
    }

    /// Its pid, once it has written it (within 10 s).
    pub fn pid(&self) -> u32 {
        let read = || {
            std::fs::read_to_string(&self.pid_file)
                .ok()
                .and_then(|text| text.trim().parse().ok())
        };
        assert!(
            wait_until(Duration::from_secs(10), || read().is_some()),
            "the hog started in the pane"
        );
        read().expect("the hog's pid")
    }
}

impl Drop for PaneHog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
        let _ = std::fs::remove_file(&self.script);
    }
}
