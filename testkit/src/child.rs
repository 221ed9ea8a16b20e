//! Children that never outlive the test or benchmark that started them: killed (SIGKILL, by
//! PID) and reaped on drop unless they already exited, so an error or a panic anywhere leaves
//! nothing running. Only our own unreaped children are signalled, so a PID cannot have been
//! recycled by another process.
use std::{
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use rustix::process::{Pid, Signal, kill_process};

/// A running child, killed and reaped on drop.
#[derive(Debug)]
pub struct KillOnDrop {
    child: Child,
    what: String,
}

impl KillOnDrop {
    /// Starts `cmd`; `what` names it in errors.
    pub fn spawn(cmd: &mut Command, what: &str) -> anyhow::Result<Self> {
        let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        Ok(Self {
            child,
            what: what.to_owned(),
        })
    }

    /// What it is, as named at spawn.
    pub fn what(&self) -> &str {
        &self.what
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

    /// Sends `signal` to the child (by PID), unless it already exited.
    pub fn signal(&mut self, signal: Signal) -> anyhow::Result<()> {
        if self.exited().is_some() {
            return Ok(());
        }
        let pid = pid_of(self.child.id()).context("PID out of range")?;
        kill_process(pid, signal).with_context(|| format!("signalling {} (pid {pid:?})", self.what))
    }

    /// Sends `signal` (again every few seconds), waits up to `grace` for the exit, then kills
    /// it. `Some(status)` when it exited by itself, `None` when it had to be killed.
    pub fn stop(&mut self, signal: Signal, grace: Duration) -> anyhow::Result<Option<ExitStatus>> {
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
        self.kill();
        Ok(None)
    }

    /// Waits for the exit.
    pub fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        self.child
            .wait()
            .with_context(|| format!("waiting for {}", self.what))
    }

    /// Kills (SIGKILL) and reaps it now, unless it already exited.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            // Child::kill sends SIGKILL to the child's PID.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

fn pid_of(pid: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(pid).ok()?)
}

/// Sends `signal` to `pid`, a process the caller started (errors, e.g. already gone, are
/// ignored).
pub fn signal_pid(pid: u32, signal: Signal) {
    if let Some(pid) = pid_of(pid) {
        let _ = kill_process(pid, signal);
    }
}

/// SIGKILLs `pid`, a process the caller started (errors, e.g. already gone, are ignored).
pub fn kill_pid(pid: u32) {
    signal_pid(pid, Signal::KILL);
}

#[cfg(test)]
mod tests {
    //! The kill-on-drop promise.
    use super::*;

    #[test]
    fn killed_on_drop() {
        let child = KillOnDrop::spawn(Command::new("sleep").arg("30"), "sleep").expect("spawn");
        let pid = child.pid();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(child);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty(), "pid {pid} still exists after drop: {stat}");
    }

    #[test]
    fn stop_returns_the_exit_of_a_cooperative_child() {
        let mut child = KillOnDrop::spawn(Command::new("sleep").arg("30"), "sleep").expect("spawn");
        let status = child
            .stop(Signal::TERM, Duration::from_secs(5))
            .expect("stop");
        assert!(status.is_some(), "sleep ends on SIGTERM by itself");
    }
}
