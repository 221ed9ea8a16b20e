//! Trees, protection and ranking on hand-made snapshots.
use super::*;
use crate::guard::config::GuardConfig;

const MIB: f64 = crate::host::units::MIB as f64;

fn proc(pid: u32, ppid: u32, comm: &str, rss_mib: u64, growth_mib: f64) -> ProcSample {
    ProcSample {
        pid,
        ppid,
        comm: comm.to_owned().into(),
        cmdline: comm.to_owned().into(),
        start_ticks: u64::from(pid) * 10,
        rss_bytes: rss_mib << 20,
        anon_bytes: rss_mib << 20,
        growth_bytes_per_s: growth_mib * MIB,
        footprint_growth_bytes_per_s: growth_mib * MIB,
        ..ProcSample::default()
    }
}

/// The pids whose executable is sshd's in [`snapshot`].
fn sshd() -> HashSet<u32> {
    [100, 200].into_iter().collect()
}

/// init → sshd → sshd-session → bash (login shell) → python pipeline → python worker (growing),
/// plus chill (big, stable) and a growing process that only calls itself sshd (600).
fn snapshot() -> (Vec<ProcSample>, HashMap<u32, Extra>) {
    let procs = vec![
        proc(1, 0, "systemd", 10, 0.0),
        proc(100, 1, "sshd", 8, 0.0),
        proc(200, 100, "sshd-session", 8, 0.0),
        proc(300, 200, "bash", 4, 0.0),
        proc(400, 300, "python3", 50, 0.5),
        proc(401, 400, "python3", 300, 120.0),
        proc(500, 300, "chill", 900, 0.0),
        proc(600, 1, "sshd", 20, 5.0),
        proc(700, 1, "memtrace", 10, 2.0),
    ];
    let extra = [
        (300, 300),
        (400, 300),
        (401, 300),
        (500, 300),
        (100, 100),
        (600, 600),
    ]
    .into_iter()
    .map(|(pid, session)| {
        (
            pid,
            Extra {
                session,
                ..Extra::default()
            },
        )
    })
    .collect();
    (procs, extra)
}

#[test]
fn growing_pipeline_tree_ranks_first_and_protected_are_never_members() {
    let config = GuardConfig::default_config().expect("default");
    let protection = Protection {
        guard_pid: 700,
        victims: &config.victims,
        sshd: &sshd(),
    };
    let (procs, extra) = snapshot();
    let ranked = rank(&procs, &extra, &protection, &|_| true);
    let first = &ranked[0];
    assert_eq!(first.root.pid, 400, "the pipeline's parent is the root");
    let pids: Vec<u32> = first.members.iter().map(|t| t.pid).collect();
    assert_eq!(pids, vec![400, 401]);
    assert!(first.growing);
    for candidate in &ranked {
        for member in &candidate.members {
            assert!(
                ![1, 100, 200, 300, 700].contains(&member.pid),
                "{} must never be a member",
                member.pid
            );
        }
    }
    let chill = ranked
        .iter()
        .find(|c| c.root.pid == 500)
        .expect("chill is its own tree");
    assert!(!chill.growing);
}

#[test]
fn sshd_is_protected_by_its_executable_not_by_its_name() {
    // The default configuration protects no names of sshd's: the built-in protection acts.
    let config = GuardConfig::default_config().expect("default");
    let sshd = sshd();
    let protection = Protection {
        guard_pid: 700,
        victims: &config.victims,
        sshd: &sshd,
    };
    let (procs, extra) = snapshot();
    let table: HashMap<u32, &ProcSample> = procs.iter().map(|p| (p.pid, p)).collect();
    let hosts = terminal_hosts(&procs, &extra);
    let reason = |pid: u32| protection.reason(table[&pid], &extra, &hosts);
    assert_eq!(reason(100), Some(Protected::Sshd));
    assert_eq!(reason(200), Some(Protected::Sshd));
    assert_eq!(reason(300), Some(Protected::SshLoginShell));
    assert_eq!(reason(600), None, "named sshd, but runs another executable");
    let ranked = rank(&procs, &extra, &protection, &|_| true);
    assert!(
        ranked.iter().any(|c| c.root.pid == 600),
        "the renamed process is a candidate"
    );
    for candidate in &ranked {
        assert!(
            candidate
                .members
                .iter()
                .all(|m| ![100, 200, 300].contains(&m.pid)),
            "{candidate:?}"
        );
    }
}

/// An ssh login shell running a tmux client; a tmux server whose panes run a bash with a
/// hog in the foreground and a zsh at its prompt with a leak in the background; a terminal
/// emulator whose terminal runs a hog directly; a daemon that left its terminal (setsid).
fn terminals() -> (Vec<ProcSample>, HashMap<u32, Extra>) {
    let procs = vec![
        proc(1, 0, "systemd", 10, 0.0),
        proc(100, 1, "sshd", 8, 0.0),
        proc(200, 100, "sshd-session", 8, 0.0),
        proc(300, 200, "bash", 4, 0.0),
        proc(310, 300, "tmux: client", 4, 0.0),
        proc(400, 1, "tmux: server", 6, 0.0),
        proc(410, 400, "bash", 4, 0.0),
        proc(420, 410, "python3", 300, 100.0),
        proc(430, 400, "zsh", 4, 0.0),
        proc(440, 430, "leak", 200, 20.0),
        proc(500, 1, "xterm", 30, 0.0),
        proc(510, 500, "python3", 100, 50.0),
        proc(600, 1, "worker", 10, 0.0),
        proc(601, 600, "worker", 200, 30.0),
    ];
    // (pid, session, tty, foreground group of the tty)
    let pts = |n: i64| 136 * 256 + n;
    let extra = [
        (1, 1, 0, -1),
        (100, 100, 0, -1),
        (200, 200, 0, -1),
        (300, 300, pts(0), 310),
        (310, 300, pts(0), 310),
        (400, 400, 0, -1),
        (410, 410, pts(1), 420),
        (420, 410, pts(1), 420),
        (430, 430, pts(2), 430),
        (440, 430, pts(2), 430),
        (500, 500, 0, -1),
        (510, 510, pts(3), 510),
        (600, 600, 0, -1),
        (601, 600, 0, -1),
    ]
    .into_iter()
    .map(|(pid, session, tty, tpgid)| {
        (
            pid,
            Extra {
                session,
                tty,
                tpgid,
            },
        )
    })
    .collect();
    (procs, extra)
}

#[test]
fn shells_and_terminal_hosts_are_never_members_only_what_they_run() {
    let config = GuardConfig::default_config().expect("default");
    let sshd = sshd();
    let protection = Protection {
        guard_pid: 999,
        victims: &config.victims,
        sshd: &sshd,
    };
    let (procs, extra) = terminals();
    let table: HashMap<u32, &ProcSample> = procs.iter().map(|p| (p.pid, p)).collect();
    let hosts = terminal_hosts(&procs, &extra);
    let reason = |pid: u32| protection.reason(table[&pid], &extra, &hosts);
    assert_eq!(reason(300), Some(Protected::SshLoginShell));
    assert_eq!(
        reason(410),
        Some(Protected::InteractiveShell),
        "runs a foreground job"
    );
    assert_eq!(
        reason(430),
        Some(Protected::InteractiveShell),
        "a shell at its prompt"
    );
    assert_eq!(reason(400), Some(Protected::TerminalHost), "tmux server");
    assert_eq!(
        reason(500),
        Some(Protected::TerminalHost),
        "terminal emulator"
    );
    assert_eq!(
        reason(510),
        None,
        "a program run directly on a terminal is no shell"
    );
    assert_eq!(reason(600), None, "a leader without a terminal");
    assert_eq!(reason(420), None);

    let ranked = rank(&procs, &extra, &protection, &|_| true);
    let tree = |root: u32| -> Vec<u32> {
        ranked
            .iter()
            .find(|c| c.root.pid == root)
            .unwrap_or_else(|| panic!("{root} roots a tree: {ranked:?}"))
            .members
            .iter()
            .map(|m| m.pid)
            .collect()
    };
    assert_eq!(ranked[0].root.pid, 420, "the foreground hog ranks first");
    assert_eq!(tree(420), vec![420], "the hog alone, not its shell");
    assert_eq!(tree(440), vec![440], "the background job alone");
    assert_eq!(tree(510), vec![510]);
    assert_eq!(
        tree(600),
        vec![600, 601],
        "a daemon's tree keeps its leader"
    );
    for candidate in &ranked {
        for member in &candidate.members {
            assert!(
                ![1, 100, 200, 300, 400, 410, 430, 500].contains(&member.pid),
                "{} must never be a member: {candidate:?}",
                member.pid
            );
        }
    }
}

#[test]
fn avoid_and_prefer_reorder() {
    let text = "[victims]\navoid = [\"^python3$\"]\n";
    let config = GuardConfig::from_layers(Some((text, "t"))).expect("valid");
    let protection = Protection {
        guard_pid: 700,
        victims: &config.victims,
        sshd: &sshd(),
    };
    let (procs, extra) = snapshot();
    let ranked = rank(&procs, &extra, &protection, &|_| true);
    let roots: Vec<u32> = ranked.iter().map(|c| c.root.pid).collect();
    assert_eq!(roots, vec![600, 500, 400], "avoided trees go last");

    let text = "[victims]\nprefer = [\"chill\"]\n";
    let config = GuardConfig::from_layers(Some((text, "t"))).expect("valid");
    let protection = Protection {
        guard_pid: 700,
        victims: &config.victims,
        sshd: &sshd(),
    };
    assert_eq!(
        rank(&procs, &extra, &protection, &|_| true)[0].root.pid,
        500
    );
}

#[test]
fn scope_limits_trees() {
    let config = GuardConfig::default_config().expect("default");
    let protection = Protection {
        guard_pid: 700,
        victims: &config.victims,
        sshd: &sshd(),
    };
    let (procs, extra) = snapshot();
    let ranked = rank(&procs, &extra, &protection, &|pid| pid == 401 || pid == 500);
    assert_eq!(ranked[0].root.pid, 401, "the parent is outside the scope");
    assert_eq!(ranked[0].members.len(), 1);
}

#[test]
fn host_leaker_beats_big_stable_gpu_holder() {
    let config = GuardConfig::default_config().expect("default");
    let protection = Protection {
        guard_pid: 1,
        victims: &config.victims,
        sshd: &sshd(),
    };
    let mut gpu_holder = proc(10, 1, "trainer", 2000, 0.0);
    gpu_holder.gpu_bytes = Some(70 << 30);
    let leaker = proc(20, 1, "leaker", 500, 40.0);
    let ranked = rank(&[gpu_holder, leaker], &HashMap::new(), &protection, &|_| {
        true
    });
    assert_eq!(ranked[0].root.pid, 20);
    assert_eq!(ranked[1].held_bytes, (2000u64 << 20) + (70u64 << 30));
}
