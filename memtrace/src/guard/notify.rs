//! Telling the people: when the guard suspends, resumes, keeps or kills a tree, a short message
//! goes to the terminals of the logged-in sessions (what was held, why, and the `memtrace guard
//! resume|kill ID` lines), and the configured hook commands run with the decision in their
//! environment (as earlyoom's `-N`/`-P` and oomd's prekill hooks do).
//!
//! Which terminals ([`login_terminals`]): the lines of `/run/utmp`'s `USER_PROCESS` entries
//! whose process is alive, and the terminals of sshd's session processes (a session leader on a
//! terminal whose parent is sshd), plus `notify.extra_terminals`. A terminal is written only if
//! it is a character device that is a terminal, opened without following a symlink, without
//! becoming anyone's controlling terminal, and non-blocking: a terminal whose output is stopped
//! (Ctrl-S) or full loses the message instead of stalling the guard. All of it — terminals and
//! hooks — runs on a thread of its own, each hook with a deadline after which it is killed; the
//! guard's loop only hands the notice over.
use std::{
    collections::BTreeSet,
    io::Write as _,
    os::unix::{fs::FileTypeExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use rustix::{
    fs::{Mode, OFlags, open},
    termios::isatty,
};

use crate::{
    guard::engine::{Act, Decision},
    host::{procfs, units::mib},
};

/// One notice: the action and the tree it was taken on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// What was done (one that [`Act::tells`]).
    pub action: Act,
    /// The tree's id (its root's pid, as `memtrace guard` names it).
    pub id: u32,
    /// The root's command name.
    pub comm: String,
    /// Every member.
    pub pids: Vec<u32>,
    /// What the tree holds, bytes.
    pub held_bytes: u64,
    /// How it is held (`freeze`, `freezer`, `stop`), empty when not known.
    pub how: String,
    /// Why, one line.
    pub reason: String,
}

/// The message written to the terminals (lines end with `\r\n`: a terminal in raw mode shows
/// them as lines too). `run`: the pid of the `memtrace run` whose guard this is (its commands
/// name it), `None` for `memtrace guard`.
pub fn message(n: &Notice, run: Option<u32>) -> String {
    let what = format!(
        "{} ({}, {} process{}, {} MiB)",
        n.id,
        n.comm,
        n.pids.len(),
        if n.pids.len() == 1 { "" } else { "es" },
        mib(n.held_bytes)
    );
    let how = match n.how.as_str() {
        "freeze" | "freezer" => " (frozen: its shell sees nothing, Ctrl-C works once resumed)",
        "stop" => " (stopped with SIGSTOP: after the resume, `fg` in its shell)",
        _ => "",
    };
    let (who, guard) = match run {
        Some(pid) => (
            format!("memtrace run {pid}'s guard"),
            format!("memtrace guard --run {pid}"),
        ),
        None => ("memtrace guard".to_owned(), "memtrace guard".to_owned()),
    };
    let mut lines = vec![match n.action {
        Act::Suspend => format!("{who}: HELD {what}{how}"),
        Act::Resume => format!("{who}: resumed {what}"),
        Act::Keep => format!("{who}: keeping {what} held"),
        Act::Kill => format!("{who}: KILLED {what}"),
        other => format!("{who}: {other} {what}"),
    }];
    lines.push(format!("  why: {}", n.reason));
    if matches!(n.action, Act::Suspend | Act::Keep) {
        lines.push(format!(
            "  resume it: sudo {guard} resume {id}   kill it: sudo {guard} kill {id}   status: sudo {guard} status",
            id = n.id
        ));
    }
    let mut text = String::from("\r\n");
    for line in lines {
        text.push_str(&line);
        text.push_str("\r\n");
    }
    text
}

/// The environment a hook gets.
pub fn hook_env(n: &Notice) -> Vec<(&'static str, String)> {
    vec![
        ("MEMTRACE_ACTION", n.action.as_str().to_owned()),
        ("MEMTRACE_ID", n.id.to_string()),
        ("MEMTRACE_PID", n.id.to_string()),
        (
            "MEMTRACE_PIDS",
            n.pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ("MEMTRACE_COMM", n.comm.clone()),
        ("MEMTRACE_HELD_BYTES", n.held_bytes.to_string()),
        ("MEMTRACE_HOW", n.how.clone()),
        ("MEMTRACE_REASON", n.reason.clone()),
    ]
}

/// `struct utmp` (glibc, x86_64 and aarch64): 384 bytes; `ut_type` (i16) at 0, `ut_pid` (i32)
/// at 4, `ut_line` (32 bytes) at 8.
const UTMP_SIZE: usize = 384;
/// `ut_type` of a logged-in user's session.
const USER_PROCESS: i16 = 7;

/// The terminal lines (`pts/3`) and pids of `USER_PROCESS` entries in a utmp file's bytes.
pub fn utmp_lines(bytes: &[u8]) -> Vec<(String, u32)> {
    bytes
        .chunks_exact(UTMP_SIZE)
        .filter(|entry| i16::from_ne_bytes([entry[0], entry[1]]) == USER_PROCESS)
        .filter_map(|entry| {
            let pid =
                u32::try_from(i32::from_ne_bytes([entry[4], entry[5], entry[6], entry[7]])).ok()?;
            let raw = &entry[8..40];
            let line = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
            let line = std::str::from_utf8(line).ok()?;
            valid_line(line).then(|| (line.to_owned(), pid))
        })
        .collect()
}

/// A terminal line as utmp names it: `pts/N` or `ttyN…`, nothing that leaves `/dev`.
fn valid_line(line: &str) -> bool {
    !line.is_empty()
        && !line.contains("..")
        && (line.starts_with("pts/") || (line.starts_with("tty") && !line.contains('/')))
}

/// The terminal device of a `tty_nr` (`/proc/PID/stat`): `/dev/pts/N` for the pty slaves
/// (majors 136–143).
fn pts_of(tty_nr: i64) -> Option<PathBuf> {
    let tty = u32::try_from(tty_nr).ok()?;
    let major = (tty >> 8) & 0xfff;
    let minor = (tty & 0xff) | ((tty >> 12) & 0xfff00);
    (136..=143)
        .contains(&major)
        .then(|| PathBuf::from(format!("/dev/pts/{}", (major - 136) * 256 + minor)))
}

/// The terminals of the logged-in sessions (see the module doc).
pub fn login_terminals(proc_root: &Path, utmp: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    if let Ok(bytes) = crate::host::input::read(utmp, 4 << 20, "utmp") {
        for (line, pid) in utmp_lines(&bytes) {
            if proc_root.join(pid.to_string()).exists() {
                found.insert(Path::new("/dev").join(line));
            }
        }
    }
    // A session leader on a pty whose parent runs sshd's executable (checked last: it reads a
    // link, the rest is the stat line already read).
    for stat in procfs::list_pids(proc_root)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pid| procfs::read(&proc_root.join(pid.to_string()).join("stat")).ok())
        .filter_map(|text| procfs::parse_pid_stat(&text))
    {
        if stat.session == stat.pid
            && let Some(pts) = pts_of(stat.tty_nr)
            && crate::host::sshd::is_sshd(proc_root, stat.ppid)
        {
            found.insert(pts);
        }
    }
    found
}

/// Writes `text` to the terminal `path` (see the module doc); an error says why not.
pub fn write_terminal(path: &Path, text: &str) -> std::io::Result<()> {
    let fd = open(
        path,
        OFlags::WRONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let file = std::fs::File::from(fd);
    if !file.metadata()?.file_type().is_char_device() || !isatty(&file) {
        return Err(std::io::Error::other("not a terminal"));
    }
    (&file).write_all(text.as_bytes())
}

/// Runs `argv` with the notice in its environment; kills it after `timeout`. An error says what
/// went wrong (for the log).
pub fn run_hook(argv: &[String], n: &Notice, timeout: Duration) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("an empty hook command")?;
    let mut child = Command::new(program)
        .args(args)
        .envs(hook_env(n))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a hook's children are ended with it on a timeout.
        .process_group(0)
        .spawn()
        .map_err(|err| format!("cannot start {program:?}: {err}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{program:?} failed: {status}")),
            Ok(None) if Instant::now() >= deadline => {
                // The group of the hook we started (its pid is the group id).
                if let Some(group) = i32::try_from(child.id())
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
                {
                    let _ =
                        rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                }
                let _ = child.wait();
                return Err(format!("{program:?} still ran after {timeout:?}: killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(err) => return Err(format!("waiting for {program:?}: {err}")),
        }
    }
}

/// Where notices go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Write to the logged-in sessions' terminals.
    pub terminals: bool,
    /// Also write to these terminals.
    pub extra_terminals: Vec<PathBuf>,
    /// Hook commands per action (argv).
    pub on_suspend: Vec<String>,
    /// See `on_suspend`.
    pub on_resume: Vec<String>,
    /// See `on_suspend`.
    pub on_keep: Vec<String>,
    /// See `on_suspend`.
    pub on_kill: Vec<String>,
    /// A hook still running after this is killed.
    pub hook_timeout: Duration,
    /// The pid of the `memtrace run` whose guard sends the notices (`None`: `memtrace guard`).
    pub run: Option<u32>,
}

impl Settings {
    fn hook(&self, action: Act) -> &[String] {
        match action {
            Act::Suspend => &self.on_suspend,
            Act::Resume => &self.on_resume,
            Act::Keep => &self.on_keep,
            Act::Kill => &self.on_kill,
            _ => &[],
        }
    }
}

/// Hands notices to a thread that writes the terminals and runs the hooks, so the guard's loop
/// never waits for either.
#[derive(Debug)]
pub struct Notifier {
    tx: Option<std::sync::mpsc::Sender<Notice>>,
}

impl Notifier {
    /// Starts the thread (none when there is nothing to do).
    pub fn start(settings: Settings, proc_root: &Path) -> Self {
        let nothing = !settings.terminals
            && settings.extra_terminals.is_empty()
            && [Act::Suspend, Act::Resume, Act::Keep, Act::Kill]
                .iter()
                .all(|&a| settings.hook(a).is_empty());
        if nothing {
            return Self { tx: None };
        }
        let (tx, rx) = std::sync::mpsc::channel::<Notice>();
        let proc_root = proc_root.to_owned();
        let spawned = std::thread::Builder::new()
            .name("notify".to_owned())
            .spawn(move || {
                for notice in rx {
                    deliver(&settings, &proc_root, &notice);
                }
            });
        if let Err(err) = &spawned {
            log::warn!("no notices to terminals or hooks: starting their thread: {err}");
        }
        Self {
            tx: spawned.ok().map(|_| tx),
        }
    }

    /// Queues `notice`.
    pub fn send(&self, notice: Notice) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(notice);
        }
    }

    /// Queues the notice for `decision`, if it acted on a held tree (not in a dry run).
    pub fn send_for(&self, decision: &Decision) {
        if let Some(notice) = notice_of(decision) {
            self.send(notice);
        }
    }
}

/// The notice for a decision that suspended, resumed, kept or killed a tree (`None` for the
/// others and for a dry run's).
pub fn notice_of(decision: &Decision) -> Option<Notice> {
    let action = Some(decision.action).filter(|a| a.tells())?;
    let tree = decision.tree.as_ref().filter(|t| t.how != "dry run")?;
    Some(Notice {
        action,
        id: tree.id,
        comm: tree.comm.clone(),
        pids: decision.pids.clone(),
        held_bytes: tree.held_bytes,
        how: tree.how.to_owned(),
        reason: decision.reason.clone(),
    })
}

fn deliver(settings: &Settings, proc_root: &Path, notice: &Notice) {
    let text = message(notice, settings.run);
    let mut terminals = BTreeSet::new();
    if settings.terminals {
        terminals = login_terminals(proc_root, Path::new("/run/utmp"));
    }
    terminals.extend(settings.extra_terminals.iter().cloned());
    for tty in &terminals {
        if let Err(err) = write_terminal(tty, &text) {
            log::info!("notice not written to {}: {err}", tty.display());
        }
    }
    let hook = settings.hook(notice.action);
    if !hook.is_empty()
        && let Err(err) = run_hook(hook, notice, settings.hook_timeout)
    {
        log::warn!("{} hook: {err}", notice.action);
    }
}

#[cfg(test)]
mod tests {
    //! The message, the hook's environment, utmp parsing and pty numbers.
    use super::*;

    fn notice(action: Act) -> Notice {
        Notice {
            action,
            id: 27189,
            comm: "python3".to_owned(),
            pids: vec![27189, 27231],
            held_bytes: 94 << 20,
            how: "freezer".to_owned(),
            reason: "used 91.0 % >= suspend 90 %".to_owned(),
        }
    }

    #[test]
    fn the_message_says_what_why_and_how_to_resume_or_kill() {
        assert_eq!(
            message(&notice(Act::Suspend), None),
            "\r\nmemtrace guard: HELD 27189 (python3, 2 processes, 94.0 MiB) (frozen: its shell sees nothing, Ctrl-C works once resumed)\r\n  \
             why: used 91.0 % >= suspend 90 %\r\n  \
             resume it: sudo memtrace guard resume 27189   kill it: sudo memtrace guard kill 27189   status: sudo memtrace guard status\r\n"
        );
        let resumed = message(&notice(Act::Resume), None);
        assert!(
            resumed.contains("memtrace guard: resumed 27189 (python3")
                && !resumed.contains("guard kill"),
            "{resumed}"
        );
        let mut stopped = notice(Act::Suspend);
        stopped.how = "stop".to_owned();
        assert!(message(&stopped, None).contains("`fg` in its shell"));
        assert!(message(&notice(Act::Kill), None).contains("KILLED 27189"));
        let run = message(&notice(Act::Suspend), Some(377));
        assert!(
            run.contains("memtrace run 377's guard: HELD 27189")
                && run.contains("resume it: sudo memtrace guard --run 377 resume 27189")
                && run.contains("status: sudo memtrace guard --run 377 status"),
            "{run}"
        );
    }

    #[test]
    fn hooks_get_the_decision_in_their_environment() {
        let env = hook_env(&notice(Act::Kill));
        let get = |key: &str| {
            env.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
                .expect(key)
        };
        assert_eq!(get("MEMTRACE_ACTION"), "kill");
        assert_eq!(get("MEMTRACE_ID"), "27189");
        assert_eq!(get("MEMTRACE_PIDS"), "27189 27231");
        assert_eq!(get("MEMTRACE_HELD_BYTES"), (94u64 << 20).to_string());
        assert_eq!(get("MEMTRACE_REASON"), "used 91.0 % >= suspend 90 %");
    }

    fn entry(kind: i16, pid: i32, line: &str) -> Vec<u8> {
        let mut e = vec![0u8; UTMP_SIZE];
        e[..2].copy_from_slice(&kind.to_ne_bytes());
        e[4..8].copy_from_slice(&pid.to_ne_bytes());
        e[8..8 + line.len()].copy_from_slice(line.as_bytes());
        e
    }

    #[test]
    fn utmp_user_sessions_are_read_and_odd_lines_refused() {
        let mut bytes = entry(USER_PROCESS, 100, "pts/3");
        bytes.extend(entry(8, 101, "pts/4")); // DEAD_PROCESS
        bytes.extend(entry(USER_PROCESS, 102, "../etc/passwd"));
        bytes.extend(entry(USER_PROCESS, 103, "tty1"));
        bytes.extend(entry(USER_PROCESS, 104, "pts/../../x"));
        bytes.extend([1, 2, 3]); // a torn last entry
        assert_eq!(
            utmp_lines(&bytes),
            vec![("pts/3".to_owned(), 100), ("tty1".to_owned(), 103)]
        );
    }

    #[test]
    fn pty_numbers_from_tty_nr() {
        assert_eq!(pts_of(136 << 8 | 5), Some(PathBuf::from("/dev/pts/5")));
        // minor 300: the low 8 bits in bits 0-7, the rest from bit 20 on.
        assert_eq!(
            pts_of((136 << 8) | (300 & 0xff) | ((300 & !0xff) << 12)),
            Some(PathBuf::from("/dev/pts/300"))
        );
        assert_eq!(pts_of(4 << 8 | 1), None, "a virtual console is no pty");
        assert_eq!(pts_of(0), None);
    }

    #[test]
    fn only_terminals_are_written() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("not-a-tty");
        std::fs::write(&file, "").expect("file");
        assert!(write_terminal(&file, "x").is_err());
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "");
        assert!(write_terminal(Path::new("/dev/null"), "x").is_err());
    }

    #[test]
    fn a_hook_that_hangs_is_killed_after_its_timeout() {
        let start = Instant::now();
        let err = run_hook(
            &["sleep".to_owned(), "30".to_owned()],
            &notice(Act::Suspend),
            Duration::from_millis(200),
        )
        .expect_err("killed");
        assert!(err.contains("killed"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(
            run_hook(
                &["false".to_owned()],
                &notice(Act::Resume),
                Duration::from_secs(5)
            )
            .expect_err("fails")
            .contains("failed")
        );
    }
}
