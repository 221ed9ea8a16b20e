//! The running guard's control socket: `memtrace guard status | resume ID | kill ID | keep ID`
//! talk to it over a Unix stream socket beside its state file (`….json` → `….sock`, in the
//! root-only state directory), mode 0600, and only a root peer (SO_PEERCRED) is answered. One
//! JSON request line, one JSON reply line per connection.
//!
//! The guard never blocks on a client: the listener and every connection are non-blocking and
//! served between two rounds; a connection has [`REQUEST_MAX`] bytes and [`REQUEST_WITHIN`] to
//! send its line, at most [`PENDING_MAX`] wait at once, and a reply the socket buffer does not
//! take at once is dropped.
use std::{
    io::{self, BufRead as _, BufReader, ErrorKind, Read as _, Write as _},
    os::{
        fd::AsFd as _,
        unix::{
            fs::{FileTypeExt as _, PermissionsExt as _},
            net::{UnixListener, UnixStream},
        },
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Longest request line.
pub const REQUEST_MAX: usize = 4096;
/// Time a client has to send its request line.
pub const REQUEST_WITHIN: Duration = Duration::from_secs(2);
/// Connections waiting for their request at once; more are closed unanswered.
pub const PENDING_MAX: usize = 16;
/// Longest reply a client reads.
const REPLY_MAX: u64 = 1 << 20;

/// The control socket of the guard whose state file is `state_file`.
pub fn socket_path(state_file: &Path) -> PathBuf {
    state_file.with_extension("sock")
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// What is held, since when, why.
    Status,
    /// Resume the held tree whose root pid is `id`.
    Resume {
        /// The tree's root pid.
        id: u32,
    },
    /// Kill the held tree whose root pid is `id`.
    Kill {
        /// The tree's root pid.
        id: u32,
    },
    /// Keep the held tree whose root pid is `id` held: the guard will not resume it by itself.
    Keep {
        /// The tree's root pid.
        id: u32,
    },
}

/// One held tree as `status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldInfo {
    /// Its id: the root's pid.
    pub id: u32,
    /// The root's command name.
    pub comm: String,
    /// Every member, root first.
    pub pids: Vec<u32>,
    /// `stop` (SIGSTOP), `freeze` (v2 cgroup.freeze), `freezer` (v1 freezer.state) or `dry run`
    /// (nothing sent).
    pub how: String,
    /// Seconds since it was held.
    pub held_for_s: f64,
    /// Why it was held.
    pub why: String,
    /// What it held when it was held (footprint + GPU), bytes.
    pub held_bytes: u64,
    /// Its growth when it was held, bytes/s.
    pub growth_bytes_per_s: f64,
    /// Times the guard resumed it already.
    pub resumes: u32,
    /// Kept held by hand (`keep`), or after `max_cycles` resumes.
    pub kept: bool,
}

/// The guard as `status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The guard's pid.
    pub pid: u32,
    /// What it guards.
    pub scope: String,
    /// Its level.
    pub level: String,
    /// Used bytes of the scope.
    pub used_bytes: u64,
    /// The scope's limit.
    pub limit_bytes: u64,
    /// Used percent.
    pub used_percent: f64,
    /// The held trees, oldest first.
    pub held: Vec<HeldInfo>,
}

/// The guard's answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request was carried out.
    pub ok: bool,
    /// What was done, or why not, one line.
    pub message: String,
    /// For `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl Reply {
    /// A refusal.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            message: message.into(),
            status: None,
        }
    }
}

#[derive(Debug)]
struct Pending {
    stream: UnixStream,
    buf: Vec<u8>,
    since: Instant,
}

/// The listening socket, removed on drop.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    /// The only user whose connections are answered (root for the guard).
    peer_uid: rustix::process::Uid,
    pending: Vec<Pending>,
}

impl Server {
    /// Binds `path` (a stale socket there is replaced; anything else is an error) with mode
    /// 0600, non-blocking; only connections from `peer_uid` are answered.
    pub fn bind(path: &Path, peer_uid: rustix::process::Uid) -> io::Result<Self> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
            Ok(_) => {
                return Err(io::Error::new(
                    ErrorKind::AlreadyExists,
                    "exists and is not a socket",
                ));
            }
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let listener = UnixListener::bind(path)?;
        // Only root may connect (root's peers are checked on every connection as well).
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            peer_uid,
            pending: Vec::new(),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts what is waiting, reads what the clients sent, and answers every complete
    /// request with `handle`. Never blocks.
    pub fn serve(&mut self, handle: &mut dyn FnMut(Request) -> Reply) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.pending.len() >= PENDING_MAX
                        || stream.set_nonblocking(true).is_err()
                        || !peer_is(&stream, self.peer_uid)
                    {
                        continue;
                    }
                    self.pending.push(Pending {
                        stream,
                        buf: Vec::new(),
                        since: Instant::now(),
                    });
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let mut open = Vec::with_capacity(self.pending.len());
        for mut client in std::mem::take(&mut self.pending) {
            match read_line(&mut client) {
                Some(Ok(line)) => {
                    let reply = match serde_json::from_slice::<Request>(&line) {
                        Ok(request) => handle(request),
                        Err(err) => Reply::error(format!("bad request: {err}")),
                    };
                    answer(&mut client.stream, &reply);
                }
                Some(Err(())) => {}
                None if now.duration_since(client.since) < REQUEST_WITHIN => open.push(client),
                None => {}
            }
        }
        self.pending = open;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the connected peer runs as `uid`.
fn peer_is(stream: &UnixStream, uid: rustix::process::Uid) -> bool {
    rustix::net::sockopt::socket_peercred(stream.as_fd()).is_ok_and(|cred| cred.uid == uid)
}

/// Reads what is there: `Some(Ok(line))` once a whole line arrived, `Some(Err(()))` when the
/// client is to be dropped (closed, too long, an error), `None` while it is still to come.
fn read_line(client: &mut Pending) -> Option<Result<Vec<u8>, ()>> {
    let mut chunk = [0u8; 1024];
    loop {
        match client.stream.read(&mut chunk) {
            Ok(0) => return Some(Err(())),
            Ok(n) => {
                client
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                if let Some(end) = client.buf.iter().position(|&b| b == b'\n') {
                    client.buf.truncate(end);
                    return Some(Ok(std::mem::take(&mut client.buf)));
                }
                if client.buf.len() > REQUEST_MAX {
                    return Some(Err(()));
                }
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if err.kind() == ErrorKind::WouldBlock => return None,
            Err(_) => return Some(Err(())),
        }
    }
}

/// Writes the reply if the socket buffer takes it at once; drops it otherwise.
fn answer(stream: &mut UnixStream, reply: &Reply) {
    let Ok(mut line) = serde_json::to_vec(reply) else {
        return;
    };
    line.push(b'\n');
    let _ = stream.write_all(&line);
}

/// Sends `request` to the guard listening at `path` and returns its reply (a client: blocks up
/// to 30 s, as a kill waits for the tree's grace period).
pub fn request(path: &Path, request: &Request) -> anyhow::Result<Reply> {
    request_within(path, request, Duration::from_secs(30))
}

/// [`request`] waiting at most `limit` for each write and for the reply (`top` asks the status
/// on every refresh and cannot wait for a kill's grace period).
pub fn request_within(path: &Path, request: &Request, limit: Duration) -> anyhow::Result<Reply> {
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "no running guard answers at {} (is one running for this scope? root only)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit.min(Duration::from_secs(5))))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .with_context(|| format!("writing to {}", path.display()))?;
    let mut text = String::new();
    BufReader::new(stream.take(REPLY_MAX))
        .read_line(&mut text)
        .with_context(|| format!("reading the guard's reply from {}", path.display()))?;
    if text.is_empty() {
        anyhow::bail!("the guard at {} closed without a reply", path.display());
    }
    serde_json::from_str(&text).context("the guard's reply")
}

/// `memtrace guard status | resume ID | kill ID | keep ID`: ask the running guard.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ControlCommand {
    /// What the running guard of this scope holds: since when, why, the memory it holds.
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Resume a held tree (ID: its root's pid, as `status` shows it).
    Resume {
        /// The tree's id.
        id: u32,
    },
    /// Kill a held tree: SIGTERM, then SIGKILL after the configured grace.
    Kill {
        /// The tree's id.
        id: u32,
    },
    /// Keep a held tree held: the guard will not resume it by itself.
    Keep {
        /// The tree's id.
        id: u32,
    },
}

/// Runs a control command against the guard listening at `socket`; prints its answer.
pub fn client(command: &ControlCommand, socket: &Path) -> anyhow::Result<std::process::ExitCode> {
    let (request, json) = match *command {
        ControlCommand::Status { json } => (Request::Status, json),
        ControlCommand::Resume { id } => (Request::Resume { id }, false),
        ControlCommand::Kill { id } => (Request::Kill { id }, false),
        ControlCommand::Keep { id } => (Request::Keep { id }, false),
    };
    let reply = self::request(socket, &request)?;
    if !reply.ok {
        anyhow::bail!("the guard refused: {}", reply.message);
    }
    match (&reply.status, json) {
        (Some(status), true) => crate::outln!("{}", serde_json::to_string(status)?)?,
        (Some(status), false) => crate::out!("{}", status_text(status))?,
        (None, _) => crate::outln!("{}", reply.message)?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `status` as people read it.
pub fn status_text(status: &Status) -> String {
    use crate::host::units::{mib, signed_mib};
    let mut text = format!(
        "guard {} guards {}: level {}, used {:.1} % ({} MiB of {} MiB), {} tree(s) held\n",
        status.pid,
        status.scope,
        status.level,
        status.used_percent,
        mib(status.used_bytes),
        mib(status.limit_bytes),
        status.held.len()
    );
    for tree in &status.held {
        let how = match tree.how.as_str() {
            "stop" => "SIGSTOP",
            "freeze" => "cgroup.freeze",
            "freezer" => "the v1 freezer",
            other => other,
        };
        text.push_str(&format!(
            "\nheld {} ({}) for {:.0} s by {how}: pids {:?}\n  holds {} MiB, grew {} MiB/s when held; resumed by the guard {} time(s){}\n  why: {}\n  memtrace guard resume {id}  |  memtrace guard kill {id}  |  memtrace guard keep {id}\n",
            tree.id,
            tree.comm,
            tree.held_for_s,
            tree.pids,
            mib(tree.held_bytes),
            signed_mib(tree.growth_bytes_per_s),
            tree.resumes,
            if tree.kept { "; kept held" } else { "" },
            tree.why,
            id = tree.id,
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    //! A served socket answers complete lines, refuses bad ones in one line, keeps slow
    //! clients without blocking, and drops silent ones after their time.
    use super::*;

    #[test]
    fn serves_lines_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.sock");
        std::fs::write(&path, "not a socket").expect("file");
        let me = rustix::process::getuid();
        assert!(Server::bind(&path, me).is_err(), "a file is not replaced");
        std::fs::remove_file(&path).expect("rm");
        let mut server = Server::bind(&path, me).expect("bind");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let seen = std::cell::RefCell::new(Vec::new());
        let mut handle = |request: Request| {
            seen.borrow_mut().push(request.clone());
            Reply {
                ok: true,
                message: format!("{request:?}"),
                status: None,
            }
        };
        // Nothing waiting: returns at once.
        let start = Instant::now();
        server.serve(&mut handle);
        assert!(start.elapsed() < Duration::from_millis(100));
        // A slow client: half a line now, the rest later.
        let mut slow = UnixStream::connect(&path).expect("connect");
        slow.write_all(b"{\"cmd\":\"resu").expect("write");
        let mut bad = UnixStream::connect(&path).expect("connect");
        bad.write_all(b"{\"cmd\":\"explode\"}\n").expect("write");
        server.serve(&mut handle);
        let mut reply = String::new();
        BufReader::new(&mut bad)
            .read_line(&mut reply)
            .expect("reply");
        let reply: Reply = serde_json::from_str(&reply).expect("json");
        assert!(!reply.ok && reply.message.starts_with("bad request"));
        assert!(!reply.message.contains('\n'));
        slow.write_all(b"me\",\"id\":42}\n").expect("write");
        server.serve(&mut handle);
        let mut reply = String::new();
        BufReader::new(&mut slow)
            .read_line(&mut reply)
            .expect("reply");
        assert!(reply.contains("Resume"), "{reply}");
        assert_eq!(*seen.borrow(), vec![Request::Resume { id: 42 }]);
        // A silent client is dropped after REQUEST_WITHIN, unanswered.
        let silent = UnixStream::connect(&path).expect("connect");
        server.serve(&mut handle);
        assert_eq!(server.pending.len(), 1);
        server.pending[0].since = Instant::now() - REQUEST_WITHIN;
        server.serve(&mut handle);
        assert!(server.pending.is_empty());
        drop(silent);
        // The client side speaks the same protocol.
        let client = std::thread::spawn({
            let path = path.clone();
            move || request(&path, &Request::Keep { id: 7 })
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while !client.is_finished() && Instant::now() < deadline {
            server.serve(&mut handle);
            std::thread::sleep(Duration::from_millis(5));
        }
        let reply = client.join().expect("thread").expect("reply");
        assert!(reply.ok && reply.message.contains("Keep"), "{reply:?}");
        drop(server);
        assert!(!path.exists(), "removed on drop");
    }
}
