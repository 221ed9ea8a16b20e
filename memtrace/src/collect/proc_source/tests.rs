//! The /proc source on a fake /proc tree: memory by kind, faults and peak, exits noticed between
//! samples (by reading, and by pidfd for real children), tree membership and pid reuse; what
//! the `stat` probe reads and the cadence of idle processes in [`probe`]; cgroup scopes and the
//! OOM counter in [`cgroup_and_oom`].
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use memtrace_testkit::child::KillOnDrop;

use super::{members::handed_out_between, members::parse_cursor, *};

mod cgroup_and_oom;
mod probe;

const KIB: u64 = 1024;

/// A fake /proc (and cgroup) tree in a temporary directory.
struct FakeProc {
    dir: tempfile::TempDir,
}

/// What one fake process shows.
#[derive(Clone, Copy)]
struct Shows {
    ppid: u32,
    anon_kib: u64,
    file_kib: u64,
    shmem_kib: u64,
    swap_kib: u64,
    hwm_kib: u64,
    minflt: u64,
    majflt: u64,
    /// User and system CPU time, clock ticks each.
    cpu_ticks: u64,
    start: u64,
}

const IDLE: Shows = Shows {
    ppid: 1,
    anon_kib: 1024,
    file_kib: 512,
    shmem_kib: 0,
    swap_kib: 0,
    hwm_kib: 2048,
    minflt: 100,
    majflt: 1,
    cpu_ticks: 1,
    start: 5000,
};

impl FakeProc {
    fn new() -> Self {
        let fake = Self {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        fake.cursor(300);
        fake.write("vmstat", "nr_free_pages 1\noom_kill 0\n");
        fake
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, relative: &str, content: &str) {
        let path = self.root().join(relative);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        // Written in place (same inode), as the kernel changes a file the source holds open.
        fs::write(path, content).expect("write");
    }

    /// The last pid handed out, in `loadavg`.
    fn cursor(&self, last_pid: u32) {
        self.write("loadavg", &format!("0.00 0.01 0.05 1/123 {last_pid}\n"));
    }

    /// `/proc/self` as in our own pid namespace, so the pid cursor is believed.
    fn own_namespace(&self) {
        std::os::unix::fs::symlink(std::process::id().to_string(), self.root().join("self"))
            .expect("symlink");
    }

    fn process(&self, pid: u32, comm: &str, shows: Shows) {
        let Shows {
            ppid,
            anon_kib,
            file_kib,
            shmem_kib,
            swap_kib,
            hwm_kib,
            minflt,
            majflt,
            cpu_ticks,
            start,
        } = shows;
        let rss_pages = (anon_kib + file_kib + shmem_kib) / 4;
        let vsize = (anon_kib + file_kib + shmem_kib) * 2 * KIB;
        self.write(
            &format!("{pid}/stat"),
            &format!(
                "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 0 {minflt} 0 {majflt} 0 {cpu_ticks} \
                 {cpu_ticks} 0 0 20 0 1 0 {start} {vsize} {rss_pages} 18446744073709551615 0 0\n"
            ),
        );
        self.write(
            &format!("{pid}/status"),
            &format!(
                "Name:\t{comm}\nVmHWM:\t{hwm_kib} kB\nRssAnon:\t{anon_kib} kB\n\
                 RssFile:\t{file_kib} kB\nRssShmem:\t{shmem_kib} kB\nVmSwap:\t{swap_kib} kB\n"
            ),
        );
        self.write(
            &format!("{pid}/statm"),
            &format!("{} {rss_pages} 0 1 0 {rss_pages} 0\n", vsize / (4 * KIB)),
        );
        self.write(&format!("{pid}/cmdline"), &format!("{comm}\0--fake\0"));
    }

    /// `status` and `cmdline` of `pid` as a process's (its stat written apart).
    fn process_files_only(&self, pid: u32, comm: &str) {
        let stat = fs::read_to_string(self.root().join(format!("{pid}/stat"))).expect("stat");
        self.process(pid, comm, IDLE);
        self.write(&format!("{pid}/stat"), &stat);
    }

    /// A kernel thread: no address space (both sizes 0 in `stat`), no memory lines in `status`.
    fn kernel_thread(&self, pid: u32) {
        self.write(
            &format!("{pid}/stat"),
            &format!("{pid} (kworker/0:1) I 2 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0 0\n"),
        );
        self.write(&format!("{pid}/status"), "Name:\tkworker/0:1\n");
        self.write(&format!("{pid}/statm"), "0 0 0 0 0 0 0\n");
    }

    /// The process becomes a zombie: what its open files then read (no address space, no
    /// memory lines).
    fn zombie(&self, pid: u32) {
        let stat = fs::read_to_string(self.root().join(format!("{pid}/stat"))).expect("stat");
        let line = procfs::parse_pid_stat(&stat).expect("a stat line");
        self.write(
            &format!("{pid}/stat"),
            &format!(
                "{pid} ({}) Z {} {pid} {pid} 0 -1 0 {} 0 {} 0 1 1 0 0 20 0 1 0 {} 0 0 \
                 18446744073709551615 0 0\n",
                line.comm, line.ppid, line.minflt, line.majflt, line.start_ticks
            ),
        );
        self.write(&format!("{pid}/status"), "Name:\tx\nState:\tZ (zombie)\n");
        self.write(&format!("{pid}/statm"), "0 0 0 0 0 0 0\n");
    }

    /// The process exits: a zombie's files, and out of the listing.
    fn exit(&self, pid: u32) {
        self.zombie(pid);
        fs::remove_dir_all(self.root().join(pid.to_string())).expect("rm");
    }

    fn cgroup(&self, pids: &[u32], oom_kills: u64) -> PathBuf {
        let dir = self.root().join("cgroup/job");
        let procs: String = pids.iter().map(|pid| format!("{pid}\n")).collect();
        self.write("cgroup/job/cgroup.procs", &procs);
        self.write(
            "cgroup/job/memory.events",
            &format!("low 0\nhigh 0\nmax 3\noom 1\noom_kill {oom_kills}\n"),
        );
        dir
    }
}

fn live(source: &ProcSource, pid: u32) -> Option<ProcSample> {
    source.live().find(|p| p.pid == pid).cloned()
}

fn pids(samples: &[ProcSample]) -> Vec<u32> {
    let mut pids: Vec<u32> = samples.iter().map(|p| p.pid).collect();
    pids.sort_unstable();
    pids
}

fn live_pids(source: &ProcSource) -> Vec<u32> {
    let mut pids: Vec<u32> = source.live().map(|p| p.pid).collect();
    pids.sort_unstable();
    pids
}

fn after(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

#[test]
fn kinds_swap_faults_and_peak_come_from_status_and_stat() {
    let fake = FakeProc::new();
    fake.process(
        100,
        "python3",
        Shows {
            ppid: 7,
            anon_kib: 262_144,
            file_kib: 2048,
            shmem_kib: 4096,
            swap_kib: 64,
            hwm_kib: 300_000,
            minflt: 65_000,
            majflt: 12,
            cpu_ticks: 30,
            start: 4242,
        },
    );
    fake.kernel_thread(2);
    let mut source =
        ProcSource::new(fake.root(), Members::All, OomSource::Machine).without_pidfds();
    source.read_at(Instant::now()).expect("read");
    let p = live(&source, 100).expect("pid 100 read");
    assert_eq!(
        (p.anon_bytes, p.file_bytes, p.shmem_bytes, p.swap_bytes),
        (262_144 * KIB, 2048 * KIB, 4096 * KIB, 64 * KIB)
    );
    assert_eq!(
        p.rss_bytes,
        (262_144 + 2048 + 4096) * KIB,
        "swap is not resident"
    );
    assert_eq!(p.peak_rss_bytes, 300_000 * KIB, "VmHWM");
    assert_eq!(p.faults, 65_012, "minflt + majflt");
    assert_eq!((p.ppid, p.start_ticks), (7, 4242));
    assert_eq!((&*p.comm, &*p.cmdline), ("python3", "python3 --fake"));
    assert!(!p.exited);
    assert!(
        live(&source, 2).is_none(),
        "kernel threads have no memory to read"
    );
    assert_eq!(source.followed(), 1);
}

#[test]
fn peak_never_below_the_current_resident_set() {
    let fake = FakeProc::new();
    fake.process(100, "grow", Shows { hwm_kib: 1, ..IDLE });
    let mut source =
        ProcSource::new(fake.root(), Members::All, OomSource::Machine).without_pidfds();
    source.read_at(Instant::now()).expect("read");
    let p = live(&source, 100).expect("read");
    assert_eq!(p.peak_rss_bytes, p.rss_bytes);
}

#[test]
fn an_exit_between_samples_is_an_exited_sample_with_its_last_values() {
    let fake = FakeProc::new();
    fake.process(100, "stays", IDLE);
    fake.process(
        101,
        "leaves",
        Shows {
            anon_kib: 8192,
            ..IDLE
        },
    );
    let mut source =
        ProcSource::new(fake.root(), Members::All, OomSource::Machine).without_pidfds();
    let t0 = Instant::now();
    let first = source.read_at(t0).expect("read");
    assert_eq!(live_pids(&source), vec![100, 101]);
    assert!(first.exited.is_empty());
    fake.exit(101);
    // Within the listing interval (no new listing): noticed by reading its open files.
    let second = source.read_at(after(t0, 100)).expect("read");
    assert_eq!(live_pids(&source), vec![100]);
    assert_eq!(second.exited.len(), 1, "{:?}", second.exited);
    let gone = &second.exited[0];
    assert!(gone.exited);
    assert_eq!((gone.pid, &*gone.comm), (101, "leaves"));
    assert_eq!(gone.anon_bytes, 8192 * KIB, "its last values");
    let third = source.read_at(after(t0, 200)).expect("read");
    assert!(third.exited.is_empty(), "reported once");
    assert_eq!(source.followed(), 1, "its files are closed");
}

#[test]
fn a_process_gone_from_the_listing_exits_too() {
    let fake = FakeProc::new();
    fake.process(100, "stays", IDLE);
    fake.process(101, "leaves", IDLE);
    let mut source =
        ProcSource::new(fake.root(), Members::All, OomSource::Machine).without_pidfds();
    let t0 = Instant::now();
    source.read_at(t0).expect("read");
    fake.exit(101);
    fake.cursor(301);
    fake.process(102, "new", IDLE);
    let reading = source.read_at(after(t0, 100)).expect("read");
    assert_eq!(pids(&reading.exited), vec![101]);
    assert_eq!(
        live_pids(&source),
        vec![100, 102],
        "a new pid was listed at once"
    );
}

/// Real children behind the fake files: their pidfds say when they exit.
fn sleeper() -> KillOnDrop {
    KillOnDrop::spawn(Command::new("sleep").arg("30"), "sleep").expect("sleep")
}

#[test]
fn pidfds_notice_an_exit_without_reading_anything() {
    let fake = FakeProc::new();
    let (mut a, b) = (sleeper(), sleeper());
    fake.process(a.pid(), "a", IDLE);
    fake.process(b.pid(), "b", IDLE);
    let mut source = ProcSource::new(fake.root(), Members::All, OomSource::Machine);
    let t0 = Instant::now();
    source.read_at(t0).expect("read");
    assert_eq!(live_pids(&source), pids_of(&[&a, &b]));
    // Its files still read as alive: only the pidfd can tell.
    a.kill();
    let second = source.read_at(after(t0, 100)).expect("read");
    assert_eq!(pids(&second.exited), vec![a.pid()]);
    assert_eq!(live_pids(&source), vec![b.pid()]);
}

fn pids_of(children: &[&KillOnDrop]) -> Vec<u32> {
    let mut pids: Vec<u32> = children.iter().map(|c| c.pid()).collect();
    pids.sort_unstable();
    pids
}

#[test]
fn a_tree_is_found_through_parents_and_others_are_not_read() {
    let fake = FakeProc::new();
    fake.process(10, "pipeline", Shows { ppid: 1, ..IDLE });
    fake.process(11, "worker", Shows { ppid: 10, ..IDLE });
    // A grandchild with a lower pid than its parent (the pid space wrapped).
    fake.process(5, "grandchild", Shows { ppid: 11, ..IDLE });
    fake.process(20, "bystander", Shows { ppid: 1, ..IDLE });
    let mut source =
        ProcSource::new(fake.root(), Members::Tree(10), OomSource::Machine).without_pidfds();
    let t0 = Instant::now();
    source.read_at(t0).expect("read");
    assert_eq!(live_pids(&source), vec![5, 10, 11]);
    // A new child joins at the next listing, found through its parent.
    fake.cursor(301);
    fake.process(301, "late", Shows { ppid: 5, ..IDLE });
    source.read_at(after(t0, 100)).expect("read");
    assert_eq!(live_pids(&source), vec![5, 10, 11, 301]);
    // The parent exits: its child stays followed.
    fake.exit(11);
    let reading = source.read_at(after(t0, 200)).expect("read");
    assert_eq!(pids(&reading.exited), vec![11]);
    assert_eq!(live_pids(&source), vec![5, 10, 301]);
}

#[test]
fn a_foreign_pid_is_examined_again_only_when_handed_out_again() {
    let fake = FakeProc::new();
    fake.own_namespace();
    fake.process(10, "pipeline", Shows { ppid: 1, ..IDLE });
    fake.process(20, "bystander", Shows { ppid: 1, ..IDLE });
    let mut source =
        ProcSource::new(fake.root(), Members::Tree(10), OomSource::Machine).without_pidfds();
    let t0 = Instant::now();
    source.read_at(t0).expect("read");
    assert_eq!(live_pids(&source), vec![10]);
    // Pid 20 now names a child of the tree, but the cursor (300 → 310) did not hand 20 out:
    // the old bystander is still there, and it is not read again.
    fake.process(20, "bystander", Shows { ppid: 10, ..IDLE });
    fake.cursor(310);
    source.read_at(after(t0, 100)).expect("read");
    assert_eq!(live_pids(&source), vec![10]);
    // The cursor wrapped past 20 (310 → … → 25): pid 20 may name a new process.
    fake.cursor(25);
    source.read_at(after(t0, 200)).expect("read");
    assert_eq!(live_pids(&source), vec![10, 20]);
}

#[test]
fn births_are_examined_by_pid_when_the_cursor_is_ours() {
    let fake = FakeProc::new();
    fake.own_namespace();
    fake.process(10, "pipeline", Shows { ppid: 1, ..IDLE });
    let mut source =
        ProcSource::new(fake.root(), Members::Tree(10), OomSource::Machine).without_pidfds();
    let t0 = Instant::now();
    source.read_at(t0).expect("read");
    assert_eq!(source.counts().listings, 1, "the first look lists");
    // Three pids handed out: a child, a thread of that child (its stat shows the child's
    // parent, so only its exit signal of -1 tells it from a second child), and one already gone.
    fake.process(301, "child", Shows { ppid: 10, ..IDLE });
    // Fields 3 to 37, then exit_signal (38) = -1.
    let fields: Vec<&str> =
        "S 10 301 301 0 -1 0 0 0 0 0 1 1 0 0 20 0 2 0 5000 1000 10 0 0 0 0 0 0 0 0 0 0 0 0 0"
            .split(' ')
            .collect();
    assert_eq!(fields.len(), 35);
    fake.write(
        "302/stat",
        &format!("302 (child) {} -1 0 0 0 0 0\n", fields.join(" ")),
    );
    fake.process_files_only(302, "child");
    fake.cursor(303);
    source.read_at(after(t0, 100)).expect("read");
    assert_eq!(
        live_pids(&source),
        vec![10, 301],
        "the thread is not a process"
    );
    assert_eq!(source.counts().listings, 1, "found without listing /proc");
    // Nothing handed out: nothing looked at.
    source.read_at(after(t0, 200)).expect("read");
    assert_eq!(source.counts().listings, 1);
    // The cursor jumped far: a listing.
    fake.cursor(1000);
    source.read_at(after(t0, 300)).expect("read");
    assert_eq!(source.counts().listings, 2);
}

#[test]
fn the_cursor_arithmetic() {
    assert_eq!(parse_cursor("0.00 0.01 0.05 1/123 4567\n"), Some(4567));
    assert_eq!(parse_cursor("0.00 0.01"), None);
    assert!(handed_out_between(11, 10, 20));
    assert!(
        !handed_out_between(10, 10, 20),
        "the old cursor itself was handed out before"
    );
    assert!(handed_out_between(20, 10, 20));
    assert!(!handed_out_between(21, 10, 20));
    assert!(handed_out_between(30_000, 29_000, 5), "wrapped at pid_max");
    assert!(handed_out_between(5, 29_000, 5));
    assert!(!handed_out_between(6, 29_000, 5));
    assert!(!handed_out_between(7, 7, 7), "nothing handed out");
}
