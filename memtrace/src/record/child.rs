//! The traced command: spawned with its environment and the mark socket, its output passed
//! through line by line (and matched against `--stage-regex`) when a regex is given, its exit
//! reported on a channel, and signals forwarded to it.
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, IsTerminal as _, Read, Write as _},
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::{Command, ExitStatus, Stdio},
};

use anyhow::Context as _;
use rustix::process::{Pid, Signal, kill_process};
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use super::marks::{Mark, SOCKET_ENV, StageRegex};

/// What the output pumps report.
#[derive(Debug)]
pub enum Pumped {
    /// A line matched the stage regex.
    Mark(Mark),
    /// One of the pipes reached its end.
    Eof,
}

/// A started command.
#[derive(Debug)]
pub struct Started {
    /// Its pid.
    pub pid: u32,
    /// Fires once with its exit status.
    pub exited: oneshot::Receiver<ExitStatus>,
    /// How many output pumps run (0 without a regex).
    pub pumps: usize,
}

/// Spawns `command` with `env` added and the mark socket announced.
pub fn spawn(
    command: &[String],
    env: &BTreeMap<String, String>,
    socket: Option<&Path>,
    regex: Option<&StageRegex>,
    marks: &UnboundedSender<Pumped>,
) -> anyhow::Result<Started> {
    let (program, args) = command.split_first().context("no command to run")?;
    let mut cmd = Command::new(program);
    cmd.args(args).envs(env);
    if let Some(socket) = socket {
        cmd.env(SOCKET_ENV, socket);
    }
    if regex.is_some() {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {program:?}"))?;
    let pid = child.id();
    let mut pumps = 0;
    if let Some(regex) = regex {
        if let Some(out) = child.stdout.take() {
            pump(out, false, regex.clone(), marks.clone());
            pumps += 1;
        }
        if let Some(err) = child.stderr.take() {
            pump(err, true, regex.clone(), marks.clone());
            pumps += 1;
        }
    }
    let (tx, exited) = oneshot::channel();
    std::thread::spawn(move || {
        if let Ok(status) = child.wait() {
            let _ = tx.send(status);
        }
    });
    Ok(Started { pid, exited, pumps })
}

/// Copies `pipe` to our stdout or stderr line by line, sending a mark for each matching line.
fn pump(
    pipe: impl Read + Send + 'static,
    to_stderr: bool,
    regex: StageRegex,
    marks: UnboundedSender<Pumped>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let _ = if to_stderr {
                let mut err = std::io::stderr().lock();
                err.write_all(&line).and_then(|()| err.flush())
            } else {
                let mut out = std::io::stdout().lock();
                out.write_all(&line).and_then(|()| out.flush())
            };
            if let Some(mark) = regex.mark(String::from_utf8_lossy(&line).trim_end()) {
                let _ = marks.send(Pumped::Mark(mark));
            }
        }
        let _ = marks.send(Pumped::Eof);
    });
}

/// The shell convention for an exit status: the code, or 128 + the signal.
pub fn exit_code(status: &ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from((128 + sig) & 0xff).unwrap_or(1),
        _ => 1,
    }
}

/// Sends `signal` to `pid`, the child we started (a failure, e.g. it already exited, is ignored).
pub fn forward(pid: u32, signal: Signal) {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    let _ = kill_process(pid, signal);
}

/// Whether stdin is a terminal (then the terminal already sent SIGINT/SIGQUIT to the child).
pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}
