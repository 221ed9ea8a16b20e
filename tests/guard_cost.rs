//! What the guard costs the machine it watches: no eBPF program on the page-fault path. During
//! a fault storm the guard's programs run fewer than once per 100 page faults — counted by the
//! kernel's own per-program run counts (`run_cnt` in `/proc/GUARD/fdinfo` of its program
//! descriptors, while a `BPF_ENABLE_STATS` descriptor held by the test switches counting on) —
//! and it holds the links of the rare-event programs only (their `tp_name` in fdinfo). The same
//! for `memtrace top`, by default.
//!
//! And what its start-up costs in memory: the kernel's BTF is parsed and the programs are
//! loaded by a helper process that hands the guard the descriptors and exits, while the guard
//! holds the programs' links itself. Its peak RSS (VmHWM) less its mapped file pages (the
//! binary's code: ~3 MiB optimised, ~15 MiB in the unoptimised build these tests run) stays
//! within 8 MiB — the BTF parses alone peaked at ~20 MiB — and `cargo xtask bench overhead`
//! and `bench reaction` check the whole VmHWM of the release build against 16 MiB.
mod support;

use std::{os::fd::OwnedFd, time::Duration};

use support::{
    MIB,
    guard_env::{GuardRun, config, state_dir, tmp},
    output_within, require_root, test_cgroup,
};

/// The tracepoints of rare events the guard attaches to.
const RARE_TRACEPOINTS: [&str; 7] = [
    "mark_victim",
    "mm_vmscan_direct_reclaim_begin",
    "mm_vmscan_direct_reclaim_end",
    "mm_vmscan_memcg_reclaim_begin",
    "mm_vmscan_memcg_reclaim_end",
    "mm_vmscan_wakeup_kswapd",
    "sched_process_exit",
];

/// The tracepoints of the per-event guard (`--per-event`): the rare ones and `rss_stat`.
const PER_EVENT_TRACEPOINTS: [&str; 8] = [
    "mark_victim",
    "mm_vmscan_direct_reclaim_begin",
    "mm_vmscan_direct_reclaim_end",
    "mm_vmscan_memcg_reclaim_begin",
    "mm_vmscan_memcg_reclaim_end",
    "mm_vmscan_wakeup_kswapd",
    "rss_stat",
    "sched_process_exit",
];

/// The guard's start-up budget for its peak RSS less its file pages (heap, stack, map views).
const OWN_PEAK_BUDGET: u64 = 8 * MIB;

/// A fault storm: maps, touches page by page and unmaps 64 MiB 12 times (about 200 000 minor
/// faults), then prints its own minor-fault count.
const STORM: &str = "import mmap, resource\n\
     for _ in range(12):\n\
     \x20   m = mmap.mmap(-1, 64 << 20)\n\
     \x20   for i in range(0, len(m), 4096): m[i] = 1\n\
     \x20   m.close()\n\
     print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt, flush=True)\n";

/// The kernel counts program runs while this descriptor is open (`BPF_ENABLE_STATS`), and
/// stops when it is closed, whatever happens to the test.
fn enable_run_counts() -> OwnedFd {
    // union bpf_attr's enable_stats member: one u32 type (BPF_STATS_RUN_TIME = 0), zero-padded.
    let attr = [0u8; 16];
    const BPF_ENABLE_STATS: libc::c_long = 32;
    // SAFETY: bpf(2) reads `attr.len()` bytes from a live, initialised buffer and returns a new
    // descriptor or -1; nothing else is touched.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_ENABLE_STATS,
            attr.as_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    assert!(
        fd >= 0,
        "BPF_ENABLE_STATS: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd was just returned by a successful bpf(2) call and nothing else owns it.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) }
}

/// What `/proc/PID/fdinfo` shows of a process's eBPF descriptors.
#[derive(Debug, Default, PartialEq, Eq)]
struct Held {
    /// Loaded programs.
    programs: usize,
    /// The tracepoints of its links, sorted.
    tracepoints: Vec<String>,
    /// Runs of its programs counted so far.
    runs: u64,
}

fn held_by(pid: u32) -> Held {
    let mut held = Held::default();
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in std::fs::read_dir(&dir).expect("fdinfo").flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let value = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key))
                .map(str::trim)
        };
        if value("prog_type:").is_some() && value("link_type:").is_none() {
            held.programs += 1;
            held.runs += value("run_cnt:")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        if let Some(name) = value("tp_name:") {
            held.tracepoints.push(name.to_owned());
        }
    }
    held.tracepoints.sort();
    held
}

#[test]
fn guard_runs_under_one_program_per_100_page_faults() {
    require_root();
    let _counting = enable_run_counts();
    let states = state_dir();
    let state_file = states.path().join("guard-state-cost.json");
    let config = config(&tmp(), "");
    let group = test_cgroup("cost", 512 * MIB);
    let group_path = group.path.clone();
    let mut guard = GuardRun::start(&group_path, &config, &state_file, &["--dry-run"]);
    let pid = guard.child.pid();
    let before = held_by(pid);
    assert_eq!(
        before.tracepoints, RARE_TRACEPOINTS,
        "the guard attaches the rare-event programs only"
    );
    assert_eq!(before.programs, RARE_TRACEPOINTS.len(), "{before:?}");
    let out = output_within(
        &mut group.command("python3", &["-c", STORM]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", support::describe(&out));
    let faults: u64 = support::text(&out.stdout)
        .trim()
        .parse()
        .expect("the storm prints its fault count");
    let after = held_by(pid);
    let runs = after.runs - before.runs;
    eprintln!("guard: {runs} program runs for {faults} page faults of the storm");
    assert!(faults >= 150_000, "a storm of {faults} faults");
    assert!(
        runs * 100 < faults,
        "{runs} program runs for {faults} page faults (over 1 per 100)"
    );
    guard.terminate();
}

/// `memtrace top` runs nothing on the page-fault path either, by default: it holds the
/// rare-event programs only, they run under once per 100 faults of a storm, and it still
/// prints every process (read from /proc).
#[test]
fn top_runs_under_one_program_per_100_page_faults_by_default() {
    use std::io::BufRead as _;
    require_root();
    let _counting = enable_run_counts();
    let mut top = support::spawn(
        support::memtrace()
            .args(["top", "--json", "--interval", "0.5"])
            .stdout(std::process::Stdio::piped()),
    );
    let pid = top.pid();
    let stdout = top.child_mut().stdout.take().expect("top's stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("top prints a snapshot");
    assert!(
        first.starts_with('[') && first.contains(&format!("\"pid\":{pid},")),
        "a JSON array of every process, read from /proc (top's own {pid} among them): {first}"
    );
    let before = held_by(pid);
    assert_eq!(
        before.tracepoints, RARE_TRACEPOINTS,
        "top attaches the rare-event programs only"
    );
    let group = test_cgroup("top-cost", 512 * MIB);
    let storm = group
        .command("python3", &["-c", STORM])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the storm");
    let out = storm.wait_with_output().expect("the storm ends");
    assert!(out.status.success(), "{}", support::describe(&out));
    let faults: u64 = support::text(&out.stdout)
        .trim()
        .parse()
        .expect("the storm prints its fault count");
    let runs = held_by(pid).runs - before.runs;
    eprintln!("top: {runs} program runs for {faults} page faults of the storm");
    assert!(faults >= 150_000, "a storm of {faults} faults");
    assert!(
        runs * 100 < faults,
        "{runs} program runs for {faults} page faults (over 1 per 100)"
    );
    drop(rx);
    drop(top);
}

/// The field `key` (`VmHWM:`, `RssFile:`) of `/proc/PID/status`, in bytes.
fn status_bytes(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in status"));
    kib * 1024
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID …": the command may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if ppid == Some(pid) {
            children.push(child);
        }
    }
    children
}

#[test]
fn guard_start_up_peak_leaves_the_btf_parse_to_a_helper_that_exits() {
    require_root();
    let states = state_dir();
    let config = config(&tmp(), "");
    let group = test_cgroup("peak", 256 * MIB);
    for (extra, tracepoints) in [
        (
            &["--dry-run", "--per-event"][..],
            &PER_EVENT_TRACEPOINTS[..],
        ),
        (&["--dry-run"][..], &RARE_TRACEPOINTS[..]),
    ] {
        let state_file = states.path().join("guard-state-peak.json");
        let mut guard = GuardRun::start(&group.path, &config, &state_file, extra);
        let pid = guard.child.pid();
        // Past start-up: a few rounds of sampling.
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            children_of(pid),
            Vec::<u32>::new(),
            "{extra:?}: the loader helper has exited"
        );
        let held = held_by(pid);
        assert_eq!(
            held.tracepoints, tracepoints,
            "{extra:?}: the guard holds its programs' links once the helper is gone"
        );
        assert_eq!(held.programs, tracepoints.len(), "{extra:?}: {held:?}");
        let peak = status_bytes(pid, "VmHWM:");
        let file = status_bytes(pid, "RssFile:");
        let own = peak.saturating_sub(file);
        eprintln!(
            "guard {extra:?}: VmHWM {} KiB, of which file pages {} KiB",
            peak / 1024,
            file / 1024
        );
        assert!(
            own <= OWN_PEAK_BUDGET,
            "{extra:?}: the guard's own memory peaked at {} KiB (VmHWM {} KiB less {} KiB of \
             file pages; budget {} KiB)",
            own / 1024,
            peak / 1024,
            file / 1024,
            OWN_PEAK_BUDGET / 1024
        );
        guard.terminate();
    }
}
