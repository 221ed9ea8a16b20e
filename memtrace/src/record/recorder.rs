//! The event loop shared by `run` and `record`: starts the source (the eBPF tracer, or /proc where
//! it cannot load) and the GPU source (paced at the interval, fresh at marks; its devices go
//! into the trace header), opens the trace and the mark socket, starts (or attaches to) the traced
//! command, then samples every interval and at every mark until the command ends (or, when
//! attached, its tree is gone, or SIGINT/SIGTERM). With `--stage-regex` and eBPF, the kernel
//! reports the writes to the command's output pipes ([`ExactMarks`]), so a stdout mark's sample
//! describes the moment the pipeline wrote it.
//!
//! Nothing the pipeline does can stall the loop: signals are forwarded and interval samples taken
//! before marks are looked at, replies to mark senders are sent without waiting (a sender that
//! does not read them loses them: counted, warned about once and totalled at the end), and the
//! draining after the command ends is bounded. The mark socket lives in a private directory
//! (0700, an unpredictable name under `$TMPDIR`), removed however the loop ends.
use std::{
    collections::BTreeMap,
    os::{fd::AsFd as _, unix::fs::PermissionsExt as _},
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
    child::{self, OutputPipes, Pumped},
    exact_marks::{Boundary, ExactMarks},
    marks::{self, ACK, StageRegex},
    session::{Finished, Session, TraceScope},
};
use crate::{
    collect::{
        gpu,
        proc_source::{Members, OomSource},
        sampler::Sampler,
        source::{Source, SourceKind},
        tracer::{PipeWrites, TracerOptions},
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
    /// Refuse to run without eBPF.
    pub require_ebpf: bool,
    /// The `cgroup.procs` files a spawned command enters before it execs (`run`'s own cgroup).
    pub cgroup_procs: Vec<std::os::fd::OwnedFd>,
}

/// How it ended.
#[derive(Debug)]
pub struct Outcome {
    /// The spawned command's exit status.
    pub status: Option<ExitStatus>,
    /// The session's totals.
    pub finished: Finished,
}

/// The most datagrams still queued on the mark socket that are applied after the command ended
/// (a descendant that keeps sending cannot hold the recorder).
const DRAIN_DATAGRAMS: usize = 256;
/// How long the output pumps may still deliver marks after the command ended (at most).
const DRAIN_PUMPS: Duration = Duration::from_secs(2);

/// Creates the mark socket's directory: private (0700) with an unpredictable name (mkdtemp)
/// under `tmp`; removed when the returned value is dropped.
fn socket_dir(tmp: &Path) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("memtrace-run-")
        .rand_bytes(12)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(tmp)
        .with_context(|| format!("creating the mark socket's directory in {}", tmp.display()))
}

/// Replies to mark senders, never waited for: one the sender's queue cannot take is dropped.
/// They go out through a duplicate of the mark socket's descriptor used directly (non-blocking),
/// so a full queue somewhere never touches the event loop's own readiness for that socket.
#[derive(Debug, Default)]
struct Replies {
    socket: Option<std::os::unix::net::UnixDatagram>,
    dropped: u64,
}

impl Replies {
    /// Replies through `socket` (the mark socket).
    fn through(socket: &UnixDatagram) -> anyhow::Result<Self> {
        let socket = socket
            .as_fd()
            .try_clone_to_owned()
            .map(std::os::unix::net::UnixDatagram::from)
            .context("duplicating the mark socket")?;
        socket
            .set_nonblocking(true)
            .context("making the mark socket non-blocking")?;
        Ok(Self {
            socket: Some(socket),
            dropped: 0,
        })
    }

    /// Sends `reply` to `to` if it can go at once; counts (and the first time, warns about) it
    /// otherwise.
    fn send(&mut self, reply: &[u8], to: &Path) {
        let Some(socket) = &self.socket else {
            return;
        };
        if socket.send_to(reply, to).is_ok() {
            return;
        }
        self.dropped += 1;
        if self.dropped == 1 {
            eprintln!(
                "[memtrace] could not reply to the mark sender at {} (it does not read its \
                 replies, or is gone): replies are dropped rather than waited for",
                to.display()
            );
        }
    }

    /// The closing count, if any reply was dropped.
    fn summary(&self) -> Option<String> {
        (self.dropped > 0).then(|| {
            format!(
                "[memtrace] {} mark repl{} dropped (the marks themselves were recorded)",
                self.dropped,
                if self.dropped == 1 {
                    "y was"
                } else {
                    "ies were"
                }
            )
        })
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
    let proc_root = Path::new("/proc");
    let members = match &plan.target {
        // The command is about to become this process's child: following this process's own
        // tree finds it from its first sample (the session keeps only the command's tree).
        TraceTarget::Spawn(_) => Members::Tree(std::process::id()),
        TraceTarget::Attach(pid) => Members::Tree(*pid),
        TraceTarget::System => Members::All,
    };
    let options = TracerOptions {
        pipe_writes: plan.regex.is_some() && matches!(plan.target, TraceTarget::Spawn(_)),
        ..TracerOptions::default()
    };
    let mut source = Source::start(
        options,
        plan.require_ebpf,
        proc_root,
        members,
        OomSource::Machine,
    )?;
    let without_ebpf = source.kind() == SourceKind::Proc;
    let pipe_writes = match &mut source {
        Source::Ebpf(tracer) => tracer.take_pipe_writes(),
        _ => None,
    };
    let mut sampler = Sampler::new(
        source,
        gpu::open_default(),
        proc_root,
        plan.interval.as_secs_f64().max(0.2),
    )
    .context("seeding the tracer from /proc")?;
    sampler.set_gpu_every(plan.interval);
    let mut scope_words = match &plan.target {
        TraceTarget::Spawn(_) => "process tree of the command".to_owned(),
        TraceTarget::Attach(pid) => format!("process tree of pid {pid}"),
        TraceTarget::System => "all processes".to_owned(),
    };
    if without_ebpf {
        scope_words.push_str(
            ", read from /proc without eBPF (no reclaim stalls, no processes born and gone \
             between samples)",
        );
    }
    let mut header = Header::collect(
        proc_root,
        scope_words,
        u64::try_from(plan.interval.as_millis()).unwrap_or(1000),
        now_ms(),
    );
    if let TraceTarget::Spawn(cmd) = &plan.target {
        header.command = cmd.clone();
    }
    header.gpus = sampler.gpu_sample().devices.clone();
    header.config = plan.config.clone();
    let writer = TraceWriter::create(&plan.out, &header)
        .with_context(|| format!("cannot write the trace to {}", plan.out.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(event_loop(plan, sampler, writer, hooks, pipe_writes))
}

/// The output pipes for `--stage-regex`, watched by the kernel where it reports pipe writes.
fn output_pipes(writes: Option<PipeWrites>) -> anyhow::Result<(OutputPipes, Option<ExactMarks>)> {
    let pipes = OutputPipes::new()?;
    let exact = writes.and_then(|writes| match ExactMarks::watch(writes, &pipes) {
        Ok(exact) => Some(exact),
        Err(err) => {
            log::warn!("{err}: stdout marks are taken when memtrace reads them");
            None
        }
    });
    Ok((pipes, exact))
}

/// The boundary of a stdout mark: its write where the kernel reported it, else read time.
fn stdout_boundary(exact: &mut Option<ExactMarks>, at: super::exact_marks::LineAt) -> Boundary {
    exact.as_mut().map_or(Boundary::Read, |e| e.boundary(at))
}

/// The boundary of a socket mark: a sender with an address can wait for the acknowledgement.
fn socket_boundary(has_address: bool) -> Boundary {
    if has_address {
        Boundary::Acknowledged
    } else {
        Boundary::Read
    }
}

async fn event_loop(
    mut plan: Plan,
    sampler: Sampler,
    writer: TraceWriter,
    hooks: Vec<Box<dyn RunHook>>,
    pipe_writes: Option<PipeWrites>,
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
    // Dropped (the directory removed) on every way out of this function.
    let (socket, _dir) = match plan.target {
        TraceTarget::Spawn(_) => {
            let dir = socket_dir(&std::env::temp_dir())?;
            let path = dir.path().join("mark.sock");
            let socket =
                UnixDatagram::bind(&path).with_context(|| format!("binding {}", path.display()))?;
            (Some((socket, path)), Some(dir))
        }
        _ => (None, None),
    };
    let mut replies = match &socket {
        Some((s, _)) => Replies::through(s)?,
        None => Replies::default(),
    };
    let mut exact = None;
    let (scope, mut started) = match &plan.target {
        TraceTarget::Spawn(cmd) => {
            let output = match &plan.regex {
                Some(regex) => {
                    let (pipes, watched) = output_pipes(pipe_writes)?;
                    exact = watched;
                    Some((regex, pipes))
                }
                None => None,
            };
            let started = child::spawn(
                cmd,
                &plan.env,
                socket.as_ref().map(|s| s.1.as_path()),
                output,
                &pump_tx,
                std::mem::take(&mut plan.cgroup_procs),
            )?;
            if let Some(exact) = &mut exact {
                exact.started();
            }
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
        // In this order: signals, the command's end and the interval come before marks, so a
        // pipeline flooding marks can neither delay a forwarded signal nor starve sampling.
        tokio::select! {
            biased;
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
            },
            status = exited => break status,
            _ = ticker.tick() => {
                if let Some(exact) = &mut exact {
                    exact.drain();
                }
                session.tick()?;
                if matches!(plan.target, TraceTarget::Attach(_)) && !session.tree_alive() {
                    break None;
                }
            }
            Some(pumped) = pump_rx.recv() => {
                if let Pumped::Mark(mark, at) = pumped {
                    session.mark(mark, stdout_boundary(&mut exact, at))?;
                }
            }
            Some((n, from)) = datagram => {
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                let has_address = from.as_pathname().is_some();
                let source = if has_address { "cli" } else { "socket" };
                let reply = apply_line(&mut session, &line, source, socket_boundary(has_address))?;
                if let Some(path) = from.as_pathname() {
                    replies.send(reply.as_bytes(), path);
                }
            }
        }
    };
    // Marks still in flight: the socket's queue and the last lines of output, both bounded.
    if let Some((s, _)) = &socket {
        for _ in 0..DRAIN_DATAGRAMS {
            let Ok((n, from)) = s.try_recv_from(&mut buf) else {
                break;
            };
            let line = String::from_utf8_lossy(&buf[..n]).into_owned();
            let boundary = socket_boundary(from.as_pathname().is_some());
            apply_line(&mut session, &line, "socket", boundary)?;
        }
    }
    let mut open_pumps = started.as_ref().map_or(0, |s| s.pumps);
    let drained_by = tokio::time::Instant::now() + DRAIN_PUMPS;
    while open_pumps > 0 {
        // A quiet pipe gets half a second, a chatty one (a descendant still printing) 2 s.
        let until = drained_by.min(tokio::time::Instant::now() + Duration::from_millis(500));
        match tokio::time::timeout_at(until, pump_rx.recv()).await {
            Ok(Some(Pumped::Mark(mark, at))) => {
                session.mark(mark, stdout_boundary(&mut exact, at))?;
            }
            Ok(Some(Pumped::Eof)) => open_pumps -= 1,
            Ok(None) | Err(_) => break,
        }
    }
    if let Some(summary) = replies.summary() {
        eprintln!("{summary}");
    }
    use std::os::unix::process::ExitStatusExt as _;
    let end = status.map(|s: ExitStatus| Event::RunEnd {
        exit_code: s.code(),
        signal: s.signal(),
    });
    let finished = session.finish(end)?;
    Ok(Outcome { status, finished })
}

/// Applies one protocol line; the reply for the sender (sent after the sample).
fn apply_line(
    session: &mut Session,
    line: &str,
    source: &'static str,
    boundary: Boundary,
) -> anyhow::Result<String> {
    match marks::parse_line(line, source) {
        Ok(mark) => {
            session.mark(mark, boundary)?;
            Ok(String::from_utf8_lossy(ACK).into_owned())
        }
        Err(err) => {
            eprintln!("[memtrace] ignored: {err}");
            Ok(format!("error: {err}"))
        }
    }
}

#[cfg(test)]
mod tests {
    //! The mark socket's directory is private and unpredictable; replies never wait.
    use std::{
        os::unix::fs::MetadataExt as _,
        time::{Duration, Instant},
    };

    use super::*;

    #[test]
    fn socket_dir_is_private_unpredictable_and_removed() {
        let tmp = tempfile::tempdir().expect("scratch");
        let a = socket_dir(tmp.path()).expect("created");
        let b = socket_dir(tmp.path()).expect("created");
        assert_ne!(a.path(), b.path());
        for dir in [&a, &b] {
            let meta = std::fs::symlink_metadata(dir.path()).expect("exists");
            assert!(meta.is_dir());
            assert_eq!(meta.mode() & 0o7777, 0o700, "{}", dir.path().display());
            let name = dir
                .path()
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a name");
            let suffix = name.strip_prefix("memtrace-run-").expect("prefix");
            assert!(suffix.len() >= 12, "{name}");
            assert_ne!(suffix, std::process::id().to_string());
        }
        // What another user planted at the old, predictable name does not matter.
        std::fs::create_dir(
            tmp.path()
                .join(format!("memtrace-run-{}", std::process::id())),
        )
        .expect("planted");
        let c = socket_dir(tmp.path()).expect("created beside the planted one");
        let paths: Vec<PathBuf> = [a, b, c].into_iter().map(|d| d.path().to_owned()).collect();
        assert!(paths.iter().all(|p| !p.exists()), "removed on drop");
    }

    #[test]
    fn replies_never_wait_for_a_sender_that_does_not_read() {
        let tmp = tempfile::tempdir().expect("scratch");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let ours = UnixDatagram::bind(tmp.path().join("ours")).expect("bind");
            let theirs_path = tmp.path().join("theirs");
            // A sender that never reads its replies.
            let _theirs =
                std::os::unix::net::UnixDatagram::bind(&theirs_path).expect("bind theirs");
            let mut replies = Replies::through(&ours).expect("replies");
            let started = Instant::now();
            for _ in 0..1000 {
                replies.send(ACK, &theirs_path);
            }
            assert!(started.elapsed() < Duration::from_secs(1));
            assert!(
                replies.dropped > 0 && replies.dropped < 1000,
                "the queue took some, the rest were dropped: {}",
                replies.dropped
            );
            let summary = replies.summary().expect("a summary");
            assert!(
                summary.contains(&format!("{} mark replies were dropped", replies.dropped)),
                "{summary}"
            );
            // A sender that is gone costs a dropped reply too, not an error.
            let before = replies.dropped;
            replies.send(ACK, &tmp.path().join("gone"));
            assert_eq!(replies.dropped, before + 1);
            // A sender that reads gets its reply, even right after the drops.
            let reader_path = tmp.path().join("reader");
            let reader = std::os::unix::net::UnixDatagram::bind(&reader_path).expect("bind");
            reader.set_nonblocking(true).expect("non-blocking");
            replies.send(ACK, &reader_path);
            let mut got = [0u8; 8];
            let n = reader.recv(&mut got).expect("the reply arrived");
            assert_eq!(&got[..n], ACK);
            assert_eq!(replies.dropped, before + 1);
        });
        assert_eq!(Replies::default().summary(), None);
    }
}
