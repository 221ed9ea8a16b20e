//! Which processes are the way into the box: sshd, known by its executable, never by the
//! command name a process gives itself (`prctl(PR_SET_NAME)`, `/proc/self/comm`). A process is
//! sshd when `/proc/PID/exe` is a root-owned file named `sshd`, `sshd-session` or `sshd-auth`
//! (also with the ` (deleted)` suffix an upgrade leaves behind); a root-owned file is one no
//! user can have copied there under that name. The listener is the `sshd` whose parent is not
//! sshd and that owns a listening TCP socket (checked where /proc lets us see its sockets).
//! Guard protection, the stall signal, `protect` and the doctor all ask here.
use std::{
    collections::{HashMap, HashSet},
    ffi::OsStr,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use crate::{procfs, safe_path::trusted_owner};

/// File names of sshd's executables: the listener and, since OpenSSH 9.8 and 10.0, its
/// per-connection `sshd-session` and `sshd-auth`.
pub const EXE_NAMES: [&str; 3] = ["sshd", "sshd-session", "sshd-auth"];

/// What `/proc/PID/exe` says about a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exe {
    /// The executable's path, without the ` (deleted)` suffix.
    pub path: PathBuf,
    /// Owned by root (the executable file itself, even when deleted).
    pub root_owned: bool,
}

impl Exe {
    /// Whether this is one of sshd's executables.
    pub fn is_sshd(&self) -> bool {
        self.root_owned
            && self
                .file_name()
                .is_some_and(|name| EXE_NAMES.contains(&name))
    }

    /// Whether this is the listener's executable (`sshd`).
    fn is_listener_binary(&self) -> bool {
        self.root_owned && self.file_name() == Some("sshd")
    }

    fn file_name(&self) -> Option<&str> {
        self.path.file_name().and_then(OsStr::to_str)
    }
}

/// The executable of `pid`, or `None` when it cannot be read (gone, a kernel thread, no
/// permission).
pub fn exe_of(proc_root: &Path, pid: u32) -> Option<Exe> {
    let link = proc_root.join(pid.to_string()).join("exe");
    let target = fs::read_link(&link).ok()?;
    let text = target.to_string_lossy();
    let path = match text.strip_suffix(" (deleted)") {
        Some(stripped) => PathBuf::from(stripped),
        None => target,
    };
    // The link resolves to the process's executable inode, deleted or not.
    let owner = fs::metadata(&link).ok()?.uid();
    Some(Exe {
        path,
        root_owned: trusted_owner(owner),
    })
}

/// Whether `pid` runs one of sshd's executables.
pub fn is_sshd(proc_root: &Path, pid: u32) -> bool {
    exe_of(proc_root, pid).is_some_and(|exe| exe.is_sshd())
}

/// The inodes of the listening TCP sockets (IPv4 and IPv6) in `pid`'s network namespace, or
/// `None` when neither table can be read.
fn listening_inodes(proc_root: &Path, pid: u32) -> Option<HashSet<u64>> {
    let net = proc_root.join(pid.to_string()).join("net");
    let mut inodes = HashSet::new();
    let mut readable = false;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = fs::read_to_string(net.join(table)) else {
            continue;
        };
        readable = true;
        inodes.extend(parse_listening(&text));
    }
    readable.then_some(inodes)
}

/// The inodes of the sockets in LISTEN state (`0A`) of a `/proc/net/tcp{,6}` table.
fn parse_listening(table: &str) -> impl Iterator<Item = u64> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        (fields.get(3) == Some(&"0A"))
            .then(|| fields.get(9)?.parse().ok())
            .flatten()
    })
}

/// Whether `pid` owns a listening TCP socket; `None` when its sockets or its descriptors
/// cannot be read (then the executable alone decides).
pub fn listens_tcp(proc_root: &Path, pid: u32) -> Option<bool> {
    let listening = listening_inodes(proc_root, pid)?;
    let fds = fs::read_dir(proc_root.join(pid.to_string()).join("fd")).ok()?;
    Some(fds.filter_map(Result::ok).any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|target| {
            target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|inode| inode.parse().ok())
                .is_some_and(|inode| listening.contains(&inode))
        })
    }))
}

/// The listening sshd processes, sorted by pid: the `sshd` executable, a parent that is not
/// sshd, and a listening TCP socket where that can be seen.
pub fn sshd_listeners(proc_root: &Path) -> Vec<u32> {
    let parent_of = |pid: u32| -> Option<u32> {
        procfs::parse_pid_stat(&procfs::read(&proc_root.join(pid.to_string()).join("stat")).ok()?)
            .map(|stat| stat.ppid)
    };
    let mut listeners: Vec<u32> = procfs::list_pids(proc_root)
        .unwrap_or_default()
        .into_iter()
        .filter(|&pid| exe_of(proc_root, pid).is_some_and(|exe| exe.is_listener_binary()))
        .filter(|&pid| parent_of(pid).is_none_or(|ppid| !is_sshd(proc_root, ppid)))
        .filter(|&pid| listens_tcp(proc_root, pid) != Some(false))
        .collect();
    listeners.sort_unstable();
    listeners
}

/// Which processes are sshd, remembered per process (pid, start time) so each executable is
/// read once; a process whose command name changed (it exec'd, or renamed itself) is looked
/// at again.
#[derive(Debug, Default)]
pub struct SshdCache {
    known: HashMap<(u32, u64), (String, bool)>,
}

impl SshdCache {
    /// Whether the process (pid, start time, current command name) runs sshd.
    pub fn is_sshd(&mut self, proc_root: &Path, pid: u32, start_ticks: u64, comm: &str) -> bool {
        if let Some((seen, sshd)) = self.known.get(&(pid, start_ticks))
            && seen == comm
        {
            return *sshd;
        }
        let sshd = is_sshd(proc_root, pid);
        self.known
            .insert((pid, start_ticks), (comm.to_owned(), sshd));
        sshd
    }

    /// Forgets the processes `live` no longer reports.
    pub fn retain(&mut self, live: impl Fn(u32, u64) -> bool) {
        self.known.retain(|&(pid, start), _| live(pid, start));
    }
}

#[cfg(test)]
mod tests {
    //! Executables, sockets and listeners on a fake /proc.
    use std::os::unix::fs::symlink;

    use super::*;

    struct Fake(tempfile::TempDir);

    impl Fake {
        fn new() -> Self {
            let fake = Self(tempfile::tempdir().expect("tempdir"));
            for bin in [
                "usr/sbin/sshd",
                "usr/lib/openssh/sshd-session",
                "usr/bin/python3",
            ] {
                let path = fake.0.path().join(bin);
                fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                fs::write(&path, "binary").expect("write");
            }
            fake
        }

        fn proc(&self, pid: u32, ppid: u32, comm: &str, exe: &str) {
            let dir = self.0.path().join(format!("proc/{pid}"));
            fs::create_dir_all(dir.join("fd")).expect("mkdir");
            fs::write(
                dir.join("stat"),
                format!(
                    "{pid} ({comm}) S {ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 1000 10 0\n"
                ),
            )
            .expect("stat");
            symlink(self.0.path().join(exe), dir.join("exe")).expect("exe");
        }

        fn listen(&self, pid: u32, inode: u64) {
            let dir = self.0.path().join(format!("proc/{pid}"));
            fs::create_dir_all(dir.join("net")).expect("mkdir");
            fs::write(
                dir.join("net/tcp"),
                format!(
                    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                     \x20  0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0 100 0 0 10 0\n\
                     \x20  1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0 100 0 0 10 0\n"
                ),
            )
            .expect("tcp");
            symlink(format!("socket:[{inode}]"), dir.join("fd/3")).expect("fd");
        }

        fn root(&self) -> PathBuf {
            self.0.path().join("proc")
        }
    }

    #[test]
    fn sshd_is_known_by_its_executable_not_its_name() {
        let fake = Fake::new();
        fake.proc(100, 1, "sshd", "usr/sbin/sshd");
        fake.proc(200, 100, "sshd-session", "usr/lib/openssh/sshd-session");
        // A hog that renamed itself "sshd".
        fake.proc(300, 1, "sshd", "usr/bin/python3");
        let root = fake.root();
        assert!(is_sshd(&root, 100) && is_sshd(&root, 200));
        assert!(!is_sshd(&root, 300), "a renamed python is not sshd");
        assert!(!is_sshd(&root, 400), "unreadable: not sshd");
        let mut cache = SshdCache::default();
        assert!(!cache.is_sshd(&root, 300, 100, "sshd"));
        assert!(cache.is_sshd(&root, 100, 100, "sshd"));
        cache.retain(|pid, _| pid == 100);
        assert_eq!(cache.known.len(), 1);
    }

    #[test]
    fn deleted_binary_still_counts_and_owner_matters() {
        let exe = |path: &str, root_owned| Exe {
            path: PathBuf::from(path),
            root_owned,
        };
        assert!(exe("/usr/sbin/sshd", true).is_sshd());
        assert!(exe("/usr/lib/openssh/sshd-auth", true).is_sshd());
        assert!(
            !exe("/home/u/sshd", false).is_sshd(),
            "a user's copy named sshd"
        );
        assert!(!exe("/usr/sbin/sshd2", true).is_sshd());

        // After an upgrade replaced the binary the kernel shows "PATH (deleted)"; a file of
        // that name stands in for the deleted inode the real link resolves to.
        let fake = Fake::new();
        fs::write(fake.0.path().join("usr/sbin/sshd (deleted)"), "old binary").expect("write");
        fake.proc(100, 1, "sshd", "usr/sbin/sshd (deleted)");
        let found = exe_of(&fake.root(), 100).expect("readable");
        assert_eq!(found.path, fake.0.path().join("usr/sbin/sshd"));
        assert!(found.is_sshd());
    }

    #[test]
    fn listener_needs_the_sshd_binary_a_non_sshd_parent_and_a_listening_socket() {
        let fake = Fake::new();
        fake.proc(1, 0, "systemd", "usr/bin/python3");
        fake.proc(100, 1, "sshd", "usr/sbin/sshd");
        fake.listen(100, 4242);
        fake.proc(101, 100, "sshd", "usr/sbin/sshd");
        fake.proc(102, 101, "sshd-session", "usr/lib/openssh/sshd-session");
        // Renamed hog: not the binary.
        fake.proc(300, 1, "sshd", "usr/bin/python3");
        fake.listen(300, 5000);
        // The sshd binary with readable sockets but none listening: not a listener.
        fake.proc(400, 1, "sshd", "usr/sbin/sshd");
        fs::create_dir_all(fake.0.path().join("proc/400/net")).expect("mkdir");
        fs::write(fake.0.path().join("proc/400/net/tcp"), "header\n").expect("tcp");
        assert_eq!(listens_tcp(&fake.root(), 100), Some(true));
        assert_eq!(listens_tcp(&fake.root(), 400), Some(false));
        assert_eq!(listens_tcp(&fake.root(), 101), None, "unreadable");
        assert_eq!(sshd_listeners(&fake.root()), vec![100]);
    }
}
