//! Long-running observers (memtrace, bpftrace) whose output is drained in the background, and
//! idle processes that populate the process table. Every child is a test-kit
//! [`KillOnDrop`]: killed by its PID when dropped, so an error or a panic anywhere leaves nothing
//! running.
use std::{
    io::{BufRead as _, BufReader, Read},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::bail;
use memtrace_testkit::child::KillOnDrop;
use rustix::process::Signal;

/// How much of a child's stderr is kept for error messages.
const STDERR_TAIL: usize = 4096;

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
    process: KillOnDrop,
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
        let mut process = KillOnDrop::spawn(cmd, what)?;
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
                        self.process.what(),
                        self.stderr_tail()
                    );
                }
            }
            if let Some(status) = self.process.exited() {
                bail!(
                    "{} exited before it was ready ({status}): {}",
                    self.process.what(),
                    self.stderr_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready within {timeout:?}: {}",
                    self.process.what(),
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
                self.process.what(),
                self.stderr_tail()
            );
        }
        Ok(())
    }

    /// Stops it with `signal` (killing it after a grace period) and joins the drain threads.
    /// Failing to exit cleanly is an error; not exiting in time only a warning, since what it
    /// observed has been measured by then.
    pub fn stop(mut self, signal: Signal) -> anyhow::Result<()> {
        let status = self.process.stop(signal, Duration::from_secs(30))?;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        match status {
            // memtrace exits 0 on SIGTERM; bpftrace exits 0 on SIGINT.
            Some(status) if !status.success() => bail!(
                "{} ended with {status}: {}",
                self.process.what(),
                self.stderr_tail()
            ),
            Some(_) => {}
            None => eprintln!(
                "xtask: warning: {} did not stop within 30 s of the signal and was killed",
                self.process.what()
            ),
        }
        Ok(())
    }
}

/// Idle processes (`sleep`) that populate the process table, killed by PID on drop.
#[derive(Debug)]
pub struct Sleepers {
    children: Vec<KillOnDrop>,
}

impl Sleepers {
    /// Starts `count` `sleep` processes.
    pub fn spawn(count: usize) -> anyhow::Result<Self> {
        let mut children = Vec::with_capacity(count);
        for _ in 0..count {
            children.push(KillOnDrop::spawn(
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
            let _ = child.signal(Signal::KILL);
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}
