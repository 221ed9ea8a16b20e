//! Loading the programs in a short-lived helper process, so the heap the load needs never
//! becomes part of the caller (the guard: its peak RSS, mlocked, on a machine about to run out
//! of memory). Parsing the kernel's ~5 MiB BTF — aya's loader and attach step each parse all of
//! it — peaks at tens of MiB; a high-water mark no `malloc_trim` brings down.
//!
//! The caller re-executes its own binary (`/proc/self/exe load-tracer`, a hidden subcommand)
//! with one end of a Unix socket pair; the helper loads and attaches the programs in process
//! ([`Tracer::start`] with [`Load::InProcess`]) and sends back, in one message, the descriptors
//! of the maps the caller reads, of each program and of each program's link (`SCM_RIGHTS`), with
//! a short text naming them; then it exits. Programs stay attached while the caller holds the
//! links ([`super::link`]). The caller rebuilds its maps from the descriptors. A helper that
//! fails sends its error instead; one that dies or stalls is an error after
//! [`HELPER_DEADLINE`] at most, and is killed (it is the caller's own child).
use std::{
    io::{IoSlice, IoSliceMut},
    mem::MaybeUninit,
    os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aya::maps::{Map, MapData};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType, recvmsg,
    sendmsg, socketpair, sockopt,
};

use super::{
    Load, Programs, RssMembers, Tracer, TracerError, TracerOptions,
    link::Attached,
    maps::{MAP_NAMES, TracerMaps},
};

/// The longest the caller waits for the helper's message (loading takes about a second).
pub const HELPER_DEADLINE: Duration = Duration::from_secs(60);

/// The most descriptors one message carries: the maps and two per program.
const MAX_FDS: usize = 32;

/// The first line of every message.
const MAGIC: &str = "memtrace-tracer 2";

/// Raw arguments of the hidden `memtrace load-tracer` (run by [`start`], never by hand).
#[derive(Debug, clap::Args)]
pub struct LoadTracerArgs {
    /// The inherited socket to send the descriptors on.
    #[arg(long)]
    pub fd: i32,
    /// Only the programs of rare events.
    #[arg(long)]
    pub rare_events: bool,
    /// Also the per-fault counter.
    #[arg(long)]
    pub fault_hook: bool,
    /// Every exit reports its memory ([`TracerOptions::exit_memory`]).
    #[arg(long)]
    pub exit_memory: bool,
}

/// What went wrong in the helper, so the caller can say why eBPF is off as if it had loaded
/// the programs itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelperFailure {
    /// No usable kernel BTF.
    Btf,
    /// The kernel lacks tracepoints (the message is their list).
    Tracepoints,
    /// The kernel refused the object, or anything else.
    Refused,
}

impl HelperFailure {
    fn of(err: &TracerError) -> (Self, String) {
        match err {
            TracerError::Btf(err) => (Self::Btf, with_causes(err)),
            TracerError::MissingTracepoints(list) => (Self::Tracepoints, list.clone()),
            TracerError::Helper { kind, message } => (*kind, message.clone()),
            other => (Self::Refused, with_causes(other)),
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Btf => "btf",
            Self::Tracepoints => "tracepoints",
            Self::Refused => "refused",
        }
    }

    fn from_word(word: &str) -> Self {
        match word {
            "btf" => Self::Btf,
            "tracepoints" => Self::Tracepoints,
            _ => Self::Refused,
        }
    }
}

/// `err` and its causes on one line (the errno of a refused map is a cause), skipping causes
/// its text already spells out: what the caller would have printed for it.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        let text = err.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = err.source();
    }
    line
}

/// The helper's message, decoded (its descriptors travel beside it).
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// Loaded: the kernel's numbering of the mm counters and the attached programs' names, in
    /// the order of their descriptors.
    Ready {
        members: RssMembers,
        programs: Vec<String>,
        /// Whether every exit reports its memory (asked for and possible on this kernel).
        exit_memory: bool,
    },
    /// Failed, and why.
    Failed(HelperFailure, String),
}

impl Reply {
    fn encode(&self) -> String {
        match self {
            Self::Ready {
                members,
                programs,
                exit_memory,
            } => format!(
                "{MAGIC}\nmembers {} {} {} {}\nprograms {}\nexit-memory {}\n",
                members.file,
                members.anon,
                members.swap,
                members.shmem,
                programs.join(" "),
                if *exit_memory { "on" } else { "off" }
            ),
            Self::Failed(kind, message) => format!(
                "{MAGIC}\nerror {}\n{}\n",
                kind.word(),
                message.replace('\n', " ")
            ),
        }
    }

    fn decode(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err("not a message of this memtrace".to_owned());
        }
        let first = lines.next().unwrap_or_default();
        if let Some(kind) = first.strip_prefix("error ") {
            let message = lines.next().unwrap_or_default().to_owned();
            return Ok(Self::Failed(HelperFailure::from_word(kind), message));
        }
        let members: Vec<usize> = first
            .strip_prefix("members ")
            .ok_or("no members line")?
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|err| format!("members: {err}"))?;
        let [file, anon, swap, shmem] = members[..] else {
            return Err(format!("{} members, not 4", members.len()));
        };
        let programs = lines
            .next()
            .and_then(|line| line.strip_prefix("programs"))
            .ok_or("no programs line")?
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let exit_memory = match lines
            .next()
            .and_then(|line| line.strip_prefix("exit-memory "))
        {
            Some("on") => true,
            Some("off") => false,
            other => return Err(format!("exit-memory: {other:?}")),
        };
        Ok(Self::Ready {
            members: RssMembers {
                file,
                anon,
                swap,
                shmem,
            },
            programs,
            exit_memory,
        })
    }
}

/// Starts the helper and takes over what it loaded (the caller's side).
pub fn start(options: TracerOptions) -> Result<Tracer, TracerError> {
    if options.pipe_writes {
        return Err(helper_error(
            "the pipe-write programs are loaded in process only",
        ));
    }
    let (ours, theirs) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|errno| helper_error(format!("socketpair: {errno}")))?;
    // The helper inherits its end (only that one: everything else here is close-on-exec).
    rustix::io::fcntl_setfd(&theirs, rustix::io::FdFlags::empty())
        .map_err(|errno| helper_error(format!("fcntl: {errno}")))?;
    sockopt::set_socket_timeout(&ours, sockopt::Timeout::Recv, Some(HELPER_DEADLINE))
        .map_err(|errno| helper_error(format!("SO_RCVTIMEO: {errno}")))?;
    let mut command = Command::new(PathBuf::from("/proc/self/exe"));
    command
        .args(["load-tracer", "--fd", &theirs.as_raw_fd().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if options.programs == Programs::RareEvents {
        command.arg("--rare-events");
    }
    if options.fault_hook {
        command.arg("--fault-hook");
    }
    if options.exit_memory {
        command.arg("--exit-memory");
    }
    let child = command
        .spawn()
        .map_err(|err| helper_error(format!("starting it: {err}")))?;
    drop(theirs);
    let received = receive(&ours);
    reap(child, received.is_err());
    let (reply, fds) = received?;
    match reply {
        Reply::Failed(HelperFailure::Tracepoints, list) => {
            Err(TracerError::MissingTracepoints(list))
        }
        Reply::Failed(kind, message) => Err(TracerError::Helper { kind, message }),
        Reply::Ready {
            members,
            programs,
            exit_memory,
        } => adopt(
            TracerOptions {
                exit_memory,
                ..options
            },
            members,
            &programs,
            fds,
        )
        .map_err(helper_error),
    }
}

/// Waits for the helper to exit (it does right after its message), killing it first if the
/// message never came or it lingers.
fn reap(mut child: Child, failed: bool) {
    if failed {
        // Only our own child, by its handle.
        let _ = child.kill();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// One message: the text and its descriptors.
fn receive(socket: &OwnedFd) -> Result<(Reply, Vec<OwnedFd>), TracerError> {
    let mut text = vec![0u8; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(&mut text)];
    let got =
        recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC).map_err(|errno| {
            match errno {
                rustix::io::Errno::AGAIN => {
                    helper_error(format!("no answer within {} s", HELPER_DEADLINE.as_secs()))
                }
                errno => helper_error(format!("receiving: {errno}")),
            }
        })?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if got.bytes == 0 {
        return Err(helper_error("it exited without an answer"));
    }
    if got
        .flags
        .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC)
    {
        return Err(helper_error("its message was truncated"));
    }
    let text = String::from_utf8_lossy(&text[..got.bytes]);
    let reply = Reply::decode(&text).map_err(helper_error)?;
    Ok((reply, fds))
}

/// The tracer over the received descriptors: the maps of [`MAP_NAMES`] in order, then each
/// program's descriptor and link.
fn adopt(
    options: TracerOptions,
    members: RssMembers,
    programs: &[String],
    fds: Vec<OwnedFd>,
) -> Result<Tracer, String> {
    let expected = MAP_NAMES.len() + 2 * programs.len();
    if fds.len() != expected {
        return Err(format!(
            "{} descriptors for {} maps and {} programs",
            fds.len(),
            MAP_NAMES.len(),
            programs.len()
        ));
    }
    let mut fds = fds.into_iter();
    let mut maps = Vec::with_capacity(MAP_NAMES.len());
    for name in MAP_NAMES {
        let fd = fds.next().ok_or("missing descriptor")?;
        let data = MapData::from_fd(fd).map_err(|err| format!("map {name}: {err}"))?;
        maps.push(Map::from_map_data(data).map_err(|err| format!("map {name}: {err}"))?);
    }
    let maps = TracerMaps::from_maps(maps).map_err(|err| err.to_string())?;
    let mut attached = Vec::with_capacity(programs.len());
    for name in programs {
        let (Some(program), Some(link)) = (fds.next(), fds.next()) else {
            return Err("missing descriptor".to_owned());
        };
        attached.push(Attached {
            name: name.clone(),
            program,
            link,
        });
    }
    Ok(Tracer::from_parts(
        maps,
        attached,
        members,
        TracerOptions {
            load: Load::Helper,
            ..options
        },
    ))
}

fn helper_error(message: impl Into<String>) -> TracerError {
    TracerError::Helper {
        kind: HelperFailure::Refused,
        message: format!("the eBPF loader helper: {}", message.into()),
    }
}

/// The helper's side (`memtrace load-tracer`): loads and attaches in process, sends the
/// descriptors (or the error) on the inherited socket, and returns; the process then exits.
pub fn serve(args: &LoadTracerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.fd > 2, "--fd {}: not an inherited socket", args.fd);
    // SAFETY: the caller passed this descriptor number for the socket it left open across exec
    // for us; nothing else in this process owns or closes it.
    let socket = unsafe { OwnedFd::from_raw_fd(args.fd) };
    rustix::io::fcntl_setfd(&socket, rustix::io::FdFlags::CLOEXEC)?;
    let options = TracerOptions {
        fault_hook: args.fault_hook,
        pipe_writes: false,
        programs: if args.rare_events {
            Programs::RareEvents
        } else {
            Programs::PerEvent
        },
        exit_memory: args.exit_memory,
        load: Load::InProcess,
    };
    match Tracer::start(options) {
        Ok(tracer) => {
            let reply = Reply::Ready {
                members: tracer.members(),
                programs: tracer.attached.iter().map(|a| a.name.clone()).collect(),
                exit_memory: tracer.options().exit_memory,
            };
            let mut fds: Vec<BorrowedFd<'_>> = tracer.maps.fds().to_vec();
            for attached in &tracer.attached {
                fds.push(attached.program.as_fd());
                fds.push(attached.link.as_fd());
            }
            send(&socket, &reply, &fds)
        }
        Err(err) => {
            let (kind, message) = HelperFailure::of(&err);
            send(&socket, &Reply::Failed(kind, message), &[])
        }
    }
}

fn send(socket: &OwnedFd, reply: &Reply, fds: &[BorrowedFd<'_>]) -> anyhow::Result<()> {
    anyhow::ensure!(fds.len() <= MAX_FDS, "{} descriptors to send", fds.len());
    let text = reply.encode();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        anyhow::ensure!(
            control.push(SendAncillaryMessage::ScmRights(fds)),
            "no room for {} descriptors",
            fds.len()
        );
    }
    sendmsg(
        socket,
        &[IoSlice::new(text.as_bytes())],
        &mut control,
        SendFlags::empty(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The message between the helper and the guard: what it loaded, or why not.
    use super::*;

    #[test]
    fn messages_decode_to_what_was_encoded() {
        let ready = Reply::Ready {
            members: RssMembers {
                file: 0,
                anon: 1,
                swap: 2,
                shmem: 3,
            },
            programs: vec!["mark_victim".to_owned(), "wakeup_kswapd".to_owned()],
            exit_memory: true,
        };
        assert_eq!(Reply::decode(&ready.encode()), Ok(ready));
        let failed = Reply::Failed(HelperFailure::Btf, "reading x:\nno such file".to_owned());
        assert_eq!(
            Reply::decode(&failed.encode()),
            Ok(Reply::Failed(
                HelperFailure::Btf,
                "reading x: no such file".to_owned()
            )),
            "one line"
        );
        let none = Reply::Ready {
            members: RssMembers {
                file: 0,
                anon: 1,
                swap: 2,
                shmem: 3,
            },
            programs: Vec::new(),
            exit_memory: false,
        };
        assert_eq!(Reply::decode(&none.encode()), Ok(none));
    }

    #[test]
    fn a_failure_carries_its_causes() {
        let refused = TracerError::Map {
            name: "STATS",
            source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_create",
                io_error: std::io::Error::from_raw_os_error(libc::EPERM),
            }),
        };
        let (kind, message) = HelperFailure::of(&refused);
        assert_eq!(kind, HelperFailure::Refused);
        assert!(message.starts_with("eBPF map STATS: "), "{message}");
        assert!(message.contains("Operation not permitted"), "{message}");
    }

    #[test]
    fn foreign_or_broken_messages_are_refused() {
        assert!(Reply::decode("hello\n").is_err());
        assert!(Reply::decode(&format!("{MAGIC}\nmembers 0 1 2\nprograms\n")).is_err());
        assert!(Reply::decode(&format!("{MAGIC}\nmembers 0 1 x 3\nprograms\n")).is_err());
        assert!(Reply::decode(&format!("{MAGIC}\nmembers 0 1 2 3\n")).is_err());
    }

    #[test]
    fn a_count_of_descriptors_that_does_not_match_is_refused() {
        let members = RssMembers {
            file: 0,
            anon: 1,
            swap: 2,
            shmem: 3,
        };
        let err = adopt(
            TracerOptions::default(),
            members,
            &["mark_victim".to_owned()],
            Vec::new(),
        )
        .expect_err("no descriptors");
        assert!(err.contains("0 descriptors"), "{err}");
    }
}
