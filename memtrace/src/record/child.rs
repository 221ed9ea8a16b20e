//! The traced command: spawned with its environment and the mark socket, its output passed
//! through unchanged as it arrives (each line — ended by `\n` or `\r` — matched against
//! `--stage-regex`, when a regex is given, on its first [`LINE_CAP`] bytes: an endless line
//! costs no more memory than that; each mark carries the byte offset in its stream where its
//! line ended, which `exact_marks` matches to the pipe write that carried it), its exit
//! reported on a channel, and signals forwarded to it. The output pipes are made before the
//! command starts ([`OutputPipes`]), so they can be watched from its first byte.
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, IsTerminal as _, Read, Write},
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::{Command, ExitStatus, Stdio},
};

use anyhow::Context as _;
use rustix::process::{Pid, Signal, kill_process};
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use super::{
    exact_marks::{LineAt, Stream},
    marks::{Mark, SOCKET_ENV, StageRegex},
};

/// What the output pumps report.
#[derive(Debug)]
pub enum Pumped {
    /// A line matched the stage regex; where it ended in its stream.
    Mark(Mark, LineAt),
    /// One of the pipes reached its end.
    Eof,
}

/// The command's stdout and stderr pipes, made before it starts.
#[derive(Debug)]
pub struct OutputPipes {
    stdout: (std::io::PipeReader, std::io::PipeWriter),
    stderr: (std::io::PipeReader, std::io::PipeWriter),
}

impl OutputPipes {
    /// Two new pipes (close-on-exec: only the command's stdout and stderr hold them).
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            stdout: std::io::pipe().context("creating the stdout pipe")?,
            stderr: std::io::pipe().context("creating the stderr pipe")?,
        })
    }

    /// The end memtrace reads `stream` from.
    pub fn read_end(&self, stream: Stream) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        match stream {
            Stream::Stdout => self.stdout.0.as_fd(),
            Stream::Stderr => self.stderr.0.as_fd(),
        }
    }
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

/// Spawns `command` with `env` added and the mark socket announced, entering the cgroups whose
/// `cgroup.procs` are `cgroup_procs` before it execs ([`super::run_cgroup`]); with a regex, its
/// stdout and stderr go to `pipes` and are pumped.
pub fn spawn(
    command: &[String],
    env: &BTreeMap<String, String>,
    socket: Option<&Path>,
    regex: Option<(&StageRegex, OutputPipes)>,
    marks: &UnboundedSender<Pumped>,
    cgroup_procs: Vec<std::os::fd::OwnedFd>,
) -> anyhow::Result<Started> {
    let (program, args) = command.split_first().context("no command to run")?;
    let mut cmd = Command::new(program);
    cmd.args(args).envs(env);
    if let Some(socket) = socket {
        cmd.env(SOCKET_ENV, socket);
    }
    let mut readers = None;
    if let Some((regex, pipes)) = regex {
        cmd.stdout(Stdio::from(pipes.stdout.1))
            .stderr(Stdio::from(pipes.stderr.1));
        readers = Some((regex, pipes.stdout.0, pipes.stderr.0));
    }
    super::run_cgroup::enter_on_exec(&mut cmd, cgroup_procs);
    let spawned = cmd.spawn();
    // Our copies of the write ends go with the Command: the pipes end when the command's do.
    drop(cmd);
    let mut child = spawned.with_context(|| format!("cannot start {program:?}"))?;
    let pid = child.id();
    let mut pumps = 0;
    if let Some((regex, out, err)) = readers {
        pump(out, Stream::Stdout, regex.clone(), marks.clone());
        pump(err, Stream::Stderr, regex.clone(), marks.clone());
        pumps += 2;
    }
    let (tx, exited) = oneshot::channel();
    std::thread::spawn(move || {
        if let Ok(status) = child.wait() {
            let _ = tx.send(status);
        }
    });
    Ok(Started { pid, exited, pumps })
}

/// The most of one output line kept to match against `--stage-regex`; the rest of a longer
/// line is passed through but not matched.
pub const LINE_CAP: usize = 64 * 1024;
/// How much of the pipe is read at once.
const CHUNK: usize = 64 * 1024;

/// The head of the output line being printed: its first [`LINE_CAP`] bytes, never more. A
/// carriage return ends a line as a newline does (a terminal shows a new line from there: a
/// progress bar redrawn with `\r` is many lines, and a mark printed before such chatter is
/// matched when it is printed, not at the next newline); `\r\n` is one line end.
#[derive(Debug)]
pub struct LineHead {
    kept: Vec<u8>,
    /// The last byte fed ended a line with `\r`.
    after_cr: bool,
    /// Bytes fed so far: the stream offset of the next byte.
    fed: u64,
}

impl Default for LineHead {
    fn default() -> Self {
        Self {
            kept: Vec::with_capacity(LINE_CAP),
            after_cr: false,
            fed: 0,
        }
    }
}

impl LineHead {
    /// Takes the next bytes of output; calls `line` with the head of each line they end
    /// (without its `\n`, `\r` or `\r\n`) and the stream offset of the byte that ended it.
    pub fn feed(&mut self, mut bytes: &[u8], mut line: impl FnMut(&[u8], u64)) {
        while let Some(&first) = bytes.first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                bytes = &bytes[1..];
                self.fed += 1;
                continue;
            }
            let end = bytes.iter().position(|&b| b == b'\n' || b == b'\r');
            let piece = &bytes[..end.unwrap_or(bytes.len())];
            let room = LINE_CAP - self.kept.len();
            self.kept.extend_from_slice(&piece[..piece.len().min(room)]);
            match end {
                Some(at) => {
                    line(&self.kept, self.fed + at as u64);
                    self.kept.clear();
                    self.after_cr = bytes[at] == b'\r';
                    bytes = &bytes[at + 1..];
                    self.fed += at as u64 + 1;
                }
                None => {
                    self.fed += bytes.len() as u64;
                    break;
                }
            }
        }
    }

    /// The output ended: calls `line` with the head of a last line that had no newline, and
    /// the offset of its last byte.
    pub fn finish(&mut self, mut line: impl FnMut(&[u8], u64)) {
        if !self.kept.is_empty() {
            line(&self.kept, self.fed.saturating_sub(1));
            self.kept.clear();
        }
    }

    /// Bytes held (at most [`LINE_CAP`]).
    pub fn held(&self) -> usize {
        self.kept.capacity()
    }
}

/// Copies `input` to `output` as it arrives and calls `on_line` with the head of every line and
/// where it ended (see [`LineHead`]); returns at the end of `input` or a read error. Write
/// errors (our own output closed) are ignored: the pipe is still drained so the command never
/// blocks on it.
pub fn pass_through(input: impl Read, mut output: impl Write, mut on_line: impl FnMut(&[u8], u64)) {
    let mut reader = BufReader::with_capacity(CHUNK, input);
    let mut head = LineHead::default();
    loop {
        let chunk = match reader.fill_buf() {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let _ = output.write_all(chunk).and_then(|()| output.flush());
        head.feed(chunk, &mut on_line);
        let n = chunk.len();
        reader.consume(n);
    }
    head.finish(on_line);
}

/// Copies `pipe` (the command's `stream`) to ours as it arrives, sending a mark for each
/// matching line.
fn pump(
    pipe: impl Read + Send + 'static,
    stream: Stream,
    regex: StageRegex,
    marks: UnboundedSender<Pumped>,
) {
    std::thread::spawn(move || {
        let on_line = |line: &[u8], at: u64| {
            if let Some(mark) = regex.mark(String::from_utf8_lossy(line).trim_end()) {
                let _ = marks.send(Pumped::Mark(mark, LineAt { stream, at }));
            }
        };
        match stream {
            Stream::Stdout => pass_through(pipe, std::io::stdout(), on_line),
            Stream::Stderr => pass_through(pipe, std::io::stderr(), on_line),
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

#[cfg(test)]
mod tests {
    //! Output passes through byte for byte; lines are matched on their first [`LINE_CAP`]
    //! bytes, however long they are.
    use super::*;

    /// A reader handing out `data` in pieces of `step` bytes.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn output_passes_through_and_lines_are_matched_on_their_head() {
        let mut input = vec![b'x'; 3 * LINE_CAP + 17];
        input.extend_from_slice(b"\nProcessing clip 2/3: decode\r\n\n");
        input.extend_from_slice(&vec![b'y'; LINE_CAP]);
        input.extend_from_slice(b"\nlast");
        for step in [1, 4096, 70_000, usize::MAX] {
            let mut out = Vec::new();
            let mut lines: Vec<Vec<u8>> = Vec::new();
            pass_through(
                Trickle {
                    data: &input,
                    step: step.min(input.len()),
                },
                &mut out,
                |line, _| lines.push(line.to_vec()),
            );
            assert!(out == input, "output unchanged (step {step})");
            assert_eq!(lines.len(), 5, "step {step}");
            assert_eq!(lines[0], vec![b'x'; LINE_CAP], "the head of the long line");
            assert_eq!(
                lines[1], b"Processing clip 2/3: decode",
                "\\r\\n ends one line"
            );
            assert_eq!(lines[2], b"");
            assert_eq!(lines[3], vec![b'y'; LINE_CAP], "exactly the cap");
            assert_eq!(lines[4], b"last", "a last line without newline");
        }
    }

    /// Progress-bar chatter redrawn with `\r`: each redraw is a line, so a mark printed before
    /// it is matched when it is printed (it used to wait for the next newline, and a second
    /// mark on the same newline-free run of output was never matched).
    #[test]
    fn carriage_returns_end_lines_so_marks_amid_progress_bars_match_at_once() {
        let re =
            StageRegex::new(r"Processing clip (?P<clip>\d+)/\d+: (?P<stage>\w+)").expect("valid");
        let mut head = LineHead::default();
        let mut marks = Vec::new();
        let mut feed = |bytes: &[u8], marks: &mut Vec<Mark>| {
            head.feed(bytes, |line, _| {
                marks.extend(re.mark(String::from_utf8_lossy(line).trim_end()));
            });
        };
        feed(b"Processing clip 1/2: decode\r", &mut marks);
        assert_eq!(marks.len(), 1, "matched at its \\r, before any newline");
        feed(
            b" 10%|#  \r 50%|###\r100%|#####\rProcessing clip 1/2: infer\r",
            &mut marks,
        );
        feed(b" 10%\r\nProcessing clip 2/2: decode\r\n", &mut marks);
        let stages: Vec<(String, Option<String>)> = marks
            .iter()
            .map(|m| match m {
                Mark::Begin { stage, clip, .. } => (stage.clone(), clip.clone()),
                Mark::End => ("end".to_owned(), None),
            })
            .collect();
        let want = [("decode", "1"), ("infer", "1"), ("decode", "2")];
        assert_eq!(
            stages,
            want.map(|(s, c)| (s.to_owned(), Some(c.to_owned())))
        );
    }

    #[test]
    fn an_endless_line_holds_no_more_than_the_cap() {
        let mut head = LineHead::default();
        let chunk = vec![b'z'; CHUNK];
        let mut seen = 0;
        // 64 MiB without a newline.
        for _ in 0..1024 {
            head.feed(&chunk, |_, _| seen += 1);
            assert!(head.held() <= LINE_CAP, "holds {}", head.held());
        }
        assert_eq!(seen, 0);
        head.feed(b"tail\nnext", |line, at| {
            seen += 1;
            assert_eq!(line.len(), LINE_CAP);
            assert_eq!(at, 1024 * CHUNK as u64 + 4, "the offset of its newline");
        });
        assert_eq!(seen, 1);
        head.finish(|line, at| {
            seen += 1;
            assert_eq!(line, b"next");
            assert_eq!(at, 1024 * CHUNK as u64 + 8, "its last byte");
        });
        assert_eq!(seen, 2);
        assert!(head.held() <= LINE_CAP);
    }

    #[test]
    fn a_capped_line_still_matches_on_its_head() {
        let re =
            StageRegex::new(r"Processing clip (?P<clip>\d+)/\d+: (?P<stage>\w+)").expect("valid");
        let mut input = b"Processing clip 4/9: encode ".to_vec();
        input.extend_from_slice(&vec![b'.'; 5 * LINE_CAP]);
        input.push(b'\n');
        let mut marks = Vec::new();
        pass_through(&input[..], std::io::sink(), |line, _| {
            marks.extend(re.mark(String::from_utf8_lossy(line).trim_end()));
        });
        assert_eq!(
            marks,
            vec![Mark::Begin {
                stage: "encode".into(),
                clip: Some("4".into()),
                source: "regex"
            }]
        );
    }
}
