//! Child processes the benchmark starts, each killed by its PID when its guard drops (so an
//! error or a panic anywhere leaves nothing running), tracers whose output is drained in the
//! background, and the /proc readers for a process's CPU time and memory.
use std::{
    io::{BufRead as _, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// How much of a child's stderr is kept for error messages.
const STDERR_TAIL: usize = 4096;

/// A running child, killed (SIGKILL, by PID) and reaped on drop unless it already exited.
#[derive(Debug)]
pub struct Guarded {
    child: Child,
    what: String,
}

impl Guarded {
    /// Starts `cmd`.
    pub fn spawn(cmd: &mut Command, what: &str) -> anyhow::Result<Self> {
        let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        Ok(Self {
            child,
            what: what.to_owned(),
        })
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child itself (to take its pipes).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Whether it has exited, with its status.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` to the child (by PID).
    pub fn signal(&mut self, signal: libc::c_int) -> anyhow::Result<()> {
        if self.exited().is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.child.id()).context("PID out of range")?;
        // SAFETY: kill has no memory-safety preconditions; the PID is our own unreaped child,
        // so it cannot have been reused by another process.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("signalling {} (pid {pid})", self.what));
        }
        Ok(())
    }

    /// Sends `signal` (again every few seconds), waits up to `grace` for the exit, then kills
    /// it. `Some(status)` when it exited by itself, `None` when it had to be killed.
    pub fn stop(
        &mut self,
        signal: libc::c_int,
        grace: Duration,
    ) -> anyhow::Result<Option<ExitStatus>> {
        const RESEND: Duration = Duration::from_secs(5);
        let start = Instant::now();
        let mut sent = start;
        self.signal(signal)?;
        while start.elapsed() < grace {
            if let Some(status) = self.exited() {
                return Ok(Some(status));
            }
            if sent.elapsed() >= RESEND {
                self.signal(signal)?;
                sent = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child
            .wait()
            .with_context(|| format!("waiting for {}", self.what))?;
        Ok(None)
    }

    /// Waits for the exit.
    pub fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        self.child
            .wait()
            .with_context(|| format!("waiting for {}", self.what))
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if self.exited().is_none() {
            // Child::kill sends SIGKILL to the child's PID.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Keeps reading `stream` to its end so the child never blocks on a full pipe; `watch` gets
/// the first line for which `ready` holds.
fn drain_lines(
    stream: impl Read + Send + 'static,
    ready: fn(&str) -> bool,
    watch: mpsc::Sender<String>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        let mut signalled = false;
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if !signalled {
                let text = String::from_utf8_lossy(&line);
                if ready(&text) {
                    signalled = true;
                    let _ = watch.send(text.into_owned());
                }
            }
        }
    })
}

/// Keeps the last [`STDERR_TAIL`] bytes of `stream`.
fn keep_tail(stream: impl Read + Send + 'static, tail: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Ok(mut tail) = tail.lock() {
                tail.push_str(&line);
                if tail.len() > STDERR_TAIL {
                    let mut cut = tail.len() - STDERR_TAIL;
                    while !tail.is_char_boundary(cut) {
                        cut += 1;
                    }
                    tail.drain(..cut);
                }
            }
            line.clear();
        }
    })
}

/// A long-running observer (memtrace, bpftrace) whose stdout and stderr are drained.
#[derive(Debug)]
pub struct Observer {
    // Dropped first: kills the child, which closes the pipes the threads read.
    process: Guarded,
    ready: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    threads: Vec<JoinHandle<()>>,
}

impl Observer {
    /// Starts `cmd` with its output piped; `ready` recognises the line that means it is up.
    /// With `stdout_to_null`, stdout goes to /dev/null instead and readiness is not tracked.
    pub fn spawn(
        cmd: &mut Command,
        what: &str,
        ready: fn(&str) -> bool,
        stdout_to_null: bool,
    ) -> anyhow::Result<Self> {
        cmd.stdin(Stdio::null()).stderr(Stdio::piped());
        cmd.stdout(if stdout_to_null {
            Stdio::null()
        } else {
            Stdio::piped()
        });
        let mut process = Guarded::spawn(cmd, what)?;
        let (send, receive) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut threads = Vec::new();
        if let Some(out) = process.child_mut().stdout.take() {
            threads.push(drain_lines(out, ready, send));
        }
        if let Some(err) = process.child_mut().stderr.take() {
            threads.push(keep_tail(err, Arc::clone(&stderr)));
        }
        Ok(Self {
            process,
            ready: receive,
            stderr,
            threads,
        })
    }

    /// The observer's PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// What it wrote to stderr lately.
    pub fn stderr_tail(&self) -> String {
        self.stderr
            .lock()
            .map(|tail| tail.trim().to_owned())
            .unwrap_or_default()
    }

    /// Waits until it printed its ready line; fails if it exits or `timeout` passes first.
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.ready.recv_timeout(Duration::from_millis(100)) {
                Ok(_) => return Ok(()),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Stdout closed without the ready line: it exited (or is about to).
                    std::thread::sleep(Duration::from_millis(200));
                    let status = self.process.exited();
                    bail!(
                        "{} closed its output before it was ready (status {status:?}): {}",
                        self.process.what,
                        self.stderr_tail()
                    );
                }
            }
            if let Some(status) = self.process.exited() {
                bail!(
                    "{} exited before it was ready ({status}): {}",
                    self.process.what,
                    self.stderr_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready within {timeout:?}: {}",
                    self.process.what,
                    self.stderr_tail()
                );
            }
        }
    }

    /// Fails if it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.process.exited() {
            bail!(
                "{} exited early ({status}): {}",
                self.process.what,
                self.stderr_tail()
            );
        }
        Ok(())
    }

    /// Stops it with `signal` (killing it after a grace period) and joins the drain threads.
    /// Failing to exit cleanly is an error; not exiting in time only a warning, since what it
    /// observed has been measured by then.
    pub fn stop(mut self, signal: libc::c_int) -> anyhow::Result<()> {
        let status = self.process.stop(signal, Duration::from_secs(30))?;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        match status {
            // memtrace exits 0 on SIGTERM; bpftrace exits 0 on SIGINT.
            Some(status) if !status.success() => bail!(
                "{} ended with {status}: {}",
                self.process.what,
                self.stderr_tail()
            ),
            Some(_) => {}
            None => eprintln!(
                "xtask: warning: {} did not stop within 30 s of the signal and was killed",
                self.process.what
            ),
        }
        Ok(())
    }
}

/// Idle processes (`sleep`) that populate the process table, killed by PID on drop.
#[derive(Debug)]
pub struct Sleepers {
    children: Vec<Guarded>,
}

impl Sleepers {
    /// Starts `count` `sleep` processes.
    pub fn spawn(count: usize) -> anyhow::Result<Self> {
        let mut children = Vec::with_capacity(count);
        for _ in 0..count {
            children.push(Guarded::spawn(
                Command::new("sleep")
                    .arg("3600")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
                "sleep",
            )?);
        }
        Ok(Self { children })
    }

    /// How many are still running.
    pub fn alive(&mut self) -> usize {
        self.children
            .iter_mut()
            .filter_map(|c| c.exited().is_none().then_some(()))
            .count()
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        // Signal all first, then reap: much faster than kill-and-wait one by one.
        for child in &mut self.children {
            let _ = child.signal(libc::SIGKILL);
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}

/// User plus system CPU time of a whole process (all threads), in clock ticks, from the text
/// of `/proc/PID/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The comm (field 2) may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line (`VmRSS:`, `VmHWM:`) of `/proc/PID/status`, in bytes.
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = value.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// CPU seconds process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_cpu_ticks(&text).with_context(|| format!("parsing {path}"))?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second <= 0 {
        bail!("sysconf(_SC_CLK_TCK) failed");
    }
    Ok(ticks as f64 / per_second as f64)
}

/// A process's memory from `/proc/PID/status`, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// VmRSS.
    pub rss: u64,
    /// RssAnon.
    pub anon: u64,
    /// RssFile.
    pub file: u64,
    /// VmHWM: the peak of VmRSS.
    pub hwm: u64,
}

/// Parses the memory lines of `/proc/PID/status`.
pub fn parse_memory(status: &str) -> Option<Memory> {
    Some(Memory {
        rss: parse_status_kb(status, "VmRSS")?,
        anon: parse_status_kb(status, "RssAnon")?,
        file: parse_status_kb(status, "RssFile")?,
        hwm: parse_status_kb(status, "VmHWM")?,
    })
}

/// Process `pid`'s memory.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_memory(&text).with_context(|| format!("no VmRSS/RssAnon/RssFile/VmHWM in {path}"))
}

/// How many processes exist (numeric entries of /proc).
pub fn process_count() -> usize {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    //! /proc parsing and the kill-on-drop guard.
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let stat = "4242 (a) R (b) S 1 4242 4242 0 -1 4194560 500 0 0 0 170 30 0 0 20 0 1 0 \
                    123 456 789";
        assert_eq!(parse_cpu_ticks(stat), Some(200));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1"), None);
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_status() {
        let status = "Name:\tmemtrace\nVmHWM:\t   12000 kB\nVmRSS:\t    8192 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(8192 * 1024));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(12000 * 1024));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        assert_eq!(parse_memory(status), None);
        let full = format!("{status}RssAnon:\t    6000 kB\nRssFile:\t    2000 kB\n");
        assert_eq!(
            parse_memory(&full),
            Some(Memory {
                rss: 8192 * 1024,
                anon: 6000 * 1024,
                file: 2000 * 1024,
                hwm: 12000 * 1024,
            })
        );
    }

    #[test]
    fn guard_kills_on_drop() {
        let guard = Guarded::spawn(Command::new("sleep").arg("60"), "sleep").expect("sleep starts");
        let pid = guard.pid();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(guard);
        // Reaped, so the PID is gone (or reused by an unrelated process, which is not a zombie
        // sleep of ours).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(!stat.contains("(sleep) Z"));
        assert!(!stat.contains("(sleep) S"));
    }
}
