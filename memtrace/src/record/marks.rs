//! Stage marks, three ways, none of which needs a library in the pipeline:
//!
//! * the one-line protocol: one UTF-8 datagram per mark to the Unix socket named by
//!   `$MEMTRACE_MARK_SOCKET` (set by `memtrace run` / `record -- CMD`), either
//!   `stage NAME [clip=ID]` (NAME begins; the stage before it ends) or `end` (the current stage
//!   ends). From Python's standard library:
//!   `s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)` and
//!   `s.sendto(b"stage composite clip=3", os.environ["MEMTRACE_MARK_SOCKET"])`;
//! * `memtrace mark STAGE [--clip ID]` / `memtrace mark --end`, which speaks that protocol and
//!   waits for memtrace to confirm it sampled at the mark;
//! * `run --stage-regex RE`: a regex with a `stage` group (and optionally `clip`) applied to each
//!   line the pipeline prints (`Processing clip 3/40: composite`).
use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;

/// The environment variable naming the mark socket.
pub const SOCKET_ENV: &str = "MEMTRACE_MARK_SOCKET";
/// The reply to a mark that was applied.
pub const ACK: &[u8] = b"ok";

/// One stage mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mark {
    /// A stage begins (ending the one before).
    Begin {
        /// Stage name.
        stage: String,
        /// Clip, when given.
        clip: Option<String>,
        /// `cli`, `socket` or `regex`.
        source: &'static str,
    },
    /// The current stage ends.
    End,
}

/// Why a protocol line was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad mark {0:?}: expected \"stage NAME [clip=ID]\" or \"end\"")]
pub struct MarkError(pub String);

/// Parses one protocol line.
pub fn parse_line(line: &str, source: &'static str) -> Result<Mark, MarkError> {
    let mut words = line.split_whitespace();
    let bad = || MarkError(line.trim().to_owned());
    match words.next() {
        Some("end") if words.next().is_none() => Ok(Mark::End),
        Some("stage") => {
            let stage = words.next().ok_or_else(bad)?.to_owned();
            let clip = match words.next() {
                Some(word) => Some(
                    word.strip_prefix("clip=")
                        .filter(|c| !c.is_empty())
                        .ok_or_else(bad)?
                        .to_owned(),
                ),
                None => None,
            };
            if words.next().is_some() {
                return Err(bad());
            }
            Ok(Mark::Begin {
                stage,
                clip,
                source,
            })
        }
        _ => Err(bad()),
    }
}

/// The protocol line for a mark.
pub fn line_of(mark: &Mark) -> String {
    match mark {
        Mark::Begin {
            stage,
            clip: Some(clip),
            ..
        } => format!("stage {stage} clip={clip}"),
        Mark::Begin {
            stage, clip: None, ..
        } => format!("stage {stage}"),
        Mark::End => "end".to_owned(),
    }
}

/// `--stage-regex`, checked.
#[derive(Clone, Debug)]
pub struct StageRegex(regex::Regex);

impl StageRegex {
    /// Compiles `pattern`, which must have a `stage` group.
    pub fn new(pattern: &str) -> anyhow::Result<Self> {
        let re =
            regex::Regex::new(pattern).with_context(|| format!("--stage-regex {pattern:?}"))?;
        if !re.capture_names().any(|n| n == Some("stage")) {
            anyhow::bail!(
                "--stage-regex {pattern:?} needs a named group (?P<stage>…) (and optionally (?P<clip>…))"
            );
        }
        Ok(Self(re))
    }

    /// The mark a printed line means, if any.
    pub fn mark(&self, line: &str) -> Option<Mark> {
        let caps = self.0.captures(line)?;
        let stage = caps.name("stage")?.as_str().trim();
        if stage.is_empty() {
            return None;
        }
        Some(Mark::Begin {
            stage: stage.replace(char::is_whitespace, "_"),
            clip: caps.name("clip").map(|c| c.as_str().to_owned()),
            source: "regex",
        })
    }
}

/// Raw arguments of `memtrace mark`.
#[derive(Debug, clap::Args)]
pub struct MarkArgs {
    /// The stage that begins now (the one before ends).
    #[arg(required_unless_present = "end")]
    pub stage: Option<String>,
    /// The clip it works on.
    #[arg(long)]
    pub clip: Option<String>,
    /// End the current stage instead.
    #[arg(long, conflicts_with_all = ["stage", "clip"])]
    pub end: bool,
}

/// Runs `memtrace mark`: sends the mark and waits up to 5 s for `memtrace run` to confirm.
pub fn run(args: MarkArgs) -> anyhow::Result<ExitCode> {
    let mark = match args.stage {
        Some(stage) if !args.end => {
            if stage.is_empty() || stage.contains(char::is_whitespace) {
                anyhow::bail!("stage name {stage:?} must be one word");
            }
            Mark::Begin {
                stage,
                clip: args.clip,
                source: "cli",
            }
        }
        _ => Mark::End,
    };
    let Some(target) = std::env::var_os(SOCKET_ENV) else {
        anyhow::bail!(
            "${SOCKET_ENV} is not set: stage marks only work inside a pipeline started by \
             `memtrace run -- CMD` (or `memtrace record -o FILE -- CMD`)"
        );
    };
    send(Path::new(&target), &mark, Duration::from_secs(5))?;
    Ok(ExitCode::SUCCESS)
}

/// Sends `mark` to the socket at `target` and waits for the acknowledgement.
pub fn send(target: &Path, mark: &Mark, timeout: Duration) -> anyhow::Result<()> {
    let dir = target
        .parent()
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    let own: PathBuf = dir.join(format!("mark-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&own);
    let socket = UnixDatagram::bind(&own)
        .or_else(|_| UnixDatagram::unbound())
        .context("creating a socket")?;
    let result = (|| {
        socket
            .set_read_timeout(Some(timeout))
            .context("socket timeout")?;
        socket
            .send_to(line_of(mark).as_bytes(), target)
            .with_context(|| {
                format!(
                    "no `memtrace run` listening at {} (did it end?)",
                    target.display()
                )
            })?;
        if socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .is_none()
        {
            return Ok(());
        }
        let mut buf = [0u8; 256];
        let n = socket
            .recv(&mut buf)
            .context("memtrace run did not confirm the mark within 5 s")?;
        let reply = String::from_utf8_lossy(&buf[..n]);
        if reply.as_bytes() != ACK {
            anyhow::bail!("memtrace run refused the mark: {reply}");
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&own);
    result
}

#[cfg(test)]
mod tests {
    //! The protocol's accepted lines and refusals, and the regex way.
    use super::*;

    #[test]
    fn protocol_lines() {
        assert_eq!(
            parse_line("stage composite clip=3\n", "socket"),
            Ok(Mark::Begin {
                stage: "composite".into(),
                clip: Some("3".into()),
                source: "socket"
            })
        );
        assert_eq!(
            parse_line("stage decode", "socket"),
            Ok(Mark::Begin {
                stage: "decode".into(),
                clip: None,
                source: "socket"
            })
        );
        assert_eq!(parse_line("end", "socket"), Ok(Mark::End));
        for bad in [
            "",
            "stage",
            "stage a b",
            "stage a clip=",
            "begin x",
            "end now",
        ] {
            assert!(parse_line(bad, "socket").is_err(), "{bad:?}");
        }
        let mark = parse_line("stage x clip=7", "cli").expect("valid");
        assert_eq!(parse_line(&line_of(&mark), "cli"), Ok(mark));
    }

    #[test]
    fn regex_marks() {
        let re =
            StageRegex::new(r"Processing clip (?P<clip>\d+)/\d+: (?P<stage>\w+)").expect("valid");
        assert_eq!(
            re.mark("Processing clip 3/40: composite"),
            Some(Mark::Begin {
                stage: "composite".into(),
                clip: Some("3".into()),
                source: "regex"
            })
        );
        assert_eq!(re.mark("other output"), None);
        assert!(StageRegex::new("clip (\\d+)").is_err());
        assert!(StageRegex::new("(").is_err());
    }
}
