//! The event loop shared by `run` and `record`: starts the tracer, opens the trace and the mark
//! socket, starts (or attaches to) the traced command, then samples every interval and at every
//! mark until the command ends (or, when attached, its tree is gone, or SIGINT/SIGTERM).
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

use anyhow::Context as _;
use rustix::process::Signal;
use tokio::{
    net::UnixDatagram,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use super::{
    RunHook,
    child::{self, Pumped},
    marks::{self, ACK, StageRegex},
    session::{Finished, Session, TraceScope},
};
use crate::{
    collect::{
        sampler::Sampler,
        tracer::{Tracer, TracerOptions},
    },
    record::trace::{Event, Header, TraceWriter},
};

/// What to trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceTarget {
    /// Start this command and trace its tree.
    Spawn(Vec<String>),
    /// Trace the tree of a running process.
    Attach(u32),
    /// Trace every process until interrupted.
    System,
}

/// Everything the loop needs.
#[derive(Debug)]
pub struct Plan {
    /// The trace file.
    pub out: PathBuf,
    /// Sampling interval.
    pub interval: Duration,
    /// What to trace.
    pub target: TraceTarget,
    /// `--stage-regex`.
    pub regex: Option<StageRegex>,
    /// Environment added for a spawned command.
    pub env: BTreeMap<String, String>,
    /// Print `[Memory]` lines.
    pub memory_lines: bool,
    /// Settings recorded in the header.
    pub config: serde_json::Value,
}

/// How it ended.
#[derive(Debug)]
pub struct Outcome {
    /// The spawned command's exit status.
    pub status: Option<ExitStatus>,
    /// The session's totals.
    pub finished: Finished,
}

/// The mark socket's directory, removed on drop.
struct SocketDir(PathBuf);

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(0))
        .unwrap_or(0)
}

/// Runs the plan to its end.
pub fn execute(plan: Plan, hooks: Vec<Box<dyn RunHook>>) -> anyhow::Result<Outcome> {
    let tracer = Tracer::start(TracerOptions::default())?;
    let proc_root = Path::new("/proc");
    let sampler = Sampler::new(tracer, proc_root, plan.interval.as_secs_f64().max(0.2))
        .context("seeding the tracer from /proc")?;
    let scope_words = match &plan.target {
        TraceTarget::Spawn(_) => "process tree of the command".to_owned(),
        TraceTarget::Attach(pid) => format!("process tree of pid {pid}"),
        TraceTarget::System => "all processes".to_owned(),
    };
    let mut header = Header::collect(
        proc_root,
        scope_words,
        u64::try_from(plan.interval.as_millis()).unwrap_or(1000),
        now_ms(),
    );
    if let TraceTarget::Spawn(cmd) = &plan.target {
        header.command = cmd.clone();
    }
    header.config = plan.config.clone();
    let writer = TraceWriter::create(&plan.out, &header)
        .with_context(|| format!("cannot write the trace to {}", plan.out.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(event_loop(plan, sampler, writer, hooks))
}

async fn event_loop(
    plan: Plan,
    sampler: Sampler,
    writer: TraceWriter,
    hooks: Vec<Box<dyn RunHook>>,
) -> anyhow::Result<Outcome> {
    let (pump_tx, mut pump_rx) = mpsc::unbounded_channel::<Pumped>();
    let (sig_tx, mut sig_rx) = mpsc::unbounded_channel::<Signal>();
    for sig in [
        Signal::HUP,
        Signal::INT,
        Signal::QUIT,
        Signal::TERM,
        Signal::USR1,
        Signal::USR2,
    ] {
        let mut stream =
            signal(SignalKind::from_raw(sig.as_raw())).context("installing signal handlers")?;
        let tx = sig_tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(sig).is_err() {
                    break;
                }
            }
        });
    }
    let (socket, _dir) = match plan.target {
        TraceTarget::Spawn(_) => {
            let dir = std::env::temp_dir().join(format!("memtrace-run-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = dir.join("mark.sock");
            let socket =
                UnixDatagram::bind(&path).with_context(|| format!("binding {}", path.display()))?;
            (Some((socket, path)), Some(SocketDir(dir)))
        }
        _ => (None, None),
    };
    let (scope, mut started) = match &plan.target {
        TraceTarget::Spawn(cmd) => {
            let started = child::spawn(
                cmd,
                &plan.env,
                socket.as_ref().map(|s| s.1.as_path()),
                plan.regex.as_ref(),
                &pump_tx,
            )?;
            (TraceScope::Tree(started.pid), Some(started))
        }
        TraceTarget::Attach(pid) => {
            if !Path::new("/proc").join(pid.to_string()).exists() {
                anyhow::bail!("no process with pid {pid}");
            }
            (TraceScope::Tree(*pid), None)
        }
        TraceTarget::System => (TraceScope::All, None),
    };
    drop(pump_tx);
    let mut session = Session::new(sampler, writer, scope, hooks, plan.memory_lines);
    session.tick()?;
    let mut ticker = tokio::time::interval(plan.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let tty = child::stdin_is_tty();
    let mut buf = vec![0u8; 4096];
    let child_pid = started.as_ref().map(|s| s.pid);
    let status = loop {
        let exited = async {
            match started.as_mut() {
                Some(s) => (&mut s.exited).await.ok(),
                None => std::future::pending().await,
            }
        };
        let datagram = async {
            match &socket {
                Some((s, _)) => s.recv_from(&mut buf).await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ticker.tick() => {
                session.tick()?;
                if matches!(plan.target, TraceTarget::Attach(_)) && !session.tree_alive() {
                    break None;
                }
            }
            status = exited => break status,
            Some(pumped) = pump_rx.recv() => {
                if let Pumped::Mark(mark) = pumped {
                    session.mark(mark)?;
                }
            }
            Some((n, from)) = datagram => {
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                let source = if from.as_pathname().is_some() { "cli" } else { "socket" };
                let reply = apply_line(&mut session, &line, source)?;
                if let (Some((s, _)), Some(path)) = (&socket, from.as_pathname()) {
                    let _ = s.send_to(reply.as_bytes(), path).await;
                }
            }
            Some(sig) = sig_rx.recv() => match child_pid {
                Some(pid) if !(tty && (sig == Signal::INT || sig == Signal::QUIT)) => {
                    child::forward(pid, sig);
                    if matches!(sig, Signal::INT | Signal::TERM | Signal::HUP | Signal::QUIT) {
                        session.terminating()?;
                    }
                }
                Some(_) => {}
                None if sig == Signal::INT || sig == Signal::TERM => break None,
                None => {}
            }
        }
    };
    // Marks still in flight: the socket's queue and the last lines of output.
    if let Some((s, _)) = &socket {
        while let Ok((n, _)) = s.try_recv_from(&mut buf) {
            let line = String::from_utf8_lossy(&buf[..n]).into_owned();
            apply_line(&mut session, &line, "socket")?;
        }
    }
    let mut open_pumps = started.as_ref().map_or(0, |s| s.pumps);
    while open_pumps > 0 {
        match tokio::time::timeout(Duration::from_millis(500), pump_rx.recv()).await {
            Ok(Some(Pumped::Mark(mark))) => session.mark(mark)?,
            Ok(Some(Pumped::Eof)) => open_pumps -= 1,
            Ok(None) | Err(_) => break,
        }
    }
    use std::os::unix::process::ExitStatusExt as _;
    let end = status.map(|s: ExitStatus| Event::RunEnd {
        exit_code: s.code(),
        signal: s.signal(),
    });
    let finished = session.finish(end)?;
    Ok(Outcome { status, finished })
}

/// Applies one protocol line; the reply for the sender.
fn apply_line(session: &mut Session, line: &str, source: &'static str) -> anyhow::Result<String> {
    match marks::parse_line(line, source) {
        Ok(mark) => {
            session.mark(mark)?;
            Ok(String::from_utf8_lossy(ACK).into_owned())
        }
        Err(err) => {
            eprintln!("[memtrace] ignored: {err}");
            Ok(format!("error: {err}"))
        }
    }
}
