//! The end of `cargo xtask test`: one `bench ssh` run of memtrace's guard against the runaway
//! hog in the guest, checked for what must hold in every run — the hog and nothing else
//! suspended, no kernel OOM kill, no `ssh true` timing out or failing, sshd not restarted, the
//! login shell and the bystander still there, and once the test frees memory the hog resumed
//! or the guard saying why it keeps it held (it resumes only a tree that will hold), and the
//! guard's notice on the terminal of the idle ssh login shell (a real login through the guest's
//! sshd: the utmp and sshd-session rules that pick the terminals). The
//! latencies are printed (a table row) but not asserted: timing targets belong to the benchmark.
use anyhow::bail;

use crate::{
    bench::{
        ssh::{self, Row},
        ssh_events::{self, Actor},
        ssh_guest::{Contender, Scenario},
        ssh_run::{self, RunRecord},
        ssh_site::Site,
    },
    vm::{guest::Probe, image},
};

/// What went wrong in `record`, one entry per broken promise.
fn problems(record: &RunRecord) -> Vec<String> {
    let actions = ssh_events::actions(&record.journal);
    let mut out = Vec::new();
    let suspended_hog = actions
        .iter()
        .any(|a| a.actor == Actor::Memtrace && a.what == "suspend" && a.comm == "hog");
    if !suspended_hog {
        out.push("memtrace did not suspend the hog".to_owned());
    }
    for a in actions.iter().filter(|a| a.acts() && a.comm != "hog") {
        out.push(format!("{:?} acted on {} ({})", a.actor, a.comm, a.what));
    }
    let oom = record.oom_kills(&actions);
    if oom > 0 {
        out.push(format!("{oom} kernel OOM kill(s)"));
    }
    let bad = record
        .loaded
        .iter()
        .filter(|(_, p)| !matches!(p, Probe::Ok(_)))
        .count();
    if bad > 0 {
        out.push(format!("{bad} `ssh true` probe(s) timed out or failed"));
    }
    if record.sshd_restarted {
        out.push("sshd was restarted".to_owned());
    }
    if record.shell_dropped {
        out.push("the idle login shell's session dropped".to_owned());
    }
    if suspended_hog && record.notice_at.is_none() {
        out.push("the guard's notice never reached the ssh login shell's terminal".to_owned());
    }
    if record.bystander != "active" {
        out.push(format!("the bystander is {:?}", record.bystander));
    }
    if !record.released_after_free(&actions) {
        out.push(
            "after the ballast was freed the hog was neither resumed nor said to be kept held"
                .to_owned(),
        );
    }
    out
}

/// Builds (or reuses) the guest image, runs memtrace against the runaway hog once, and fails
/// naming every broken promise.
pub fn run() -> anyhow::Result<()> {
    let image = image::build(image::Kernel::Stable)?;
    let record = ssh_run::run(
        &image,
        Contender::Memtrace,
        Scenario::Runaway,
        Site::Machine,
    )?;
    eprintln!(
        "xtask:   ssh true (s after hog start:latency): {}; guard CPU {:?} s; notice on the login shell's terminal {} s after the suspension",
        record.probe_series(),
        record.contender_cpu_s,
        record
            .notice_delay(&ssh_events::actions(&record.journal))
            .map_or("(none)".to_owned(), |d| format!("{:.2}", d.max(0.0)))
    );
    for line in &record.journal {
        eprintln!("xtask:   | {line}");
    }
    let found = problems(&record);
    let row = Row {
        scenario: Scenario::Runaway,
        contender: Contender::Memtrace,
        site: Site::Machine,
        runs: vec![record],
        failed: 0,
    };
    println!("{}\n{}", ssh::header(), ssh::line(&row).0);
    if !found.is_empty() {
        bail!("the guest run broke a promise: {}", found.join("; "));
    }
    println!(
        "xtask: guest run: the hog alone was suspended, then resumed or kept held with the reason; sshd, the shell and the bystander were untouched (latencies above are measured, not asserted)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The checks on a run's record.
    use super::*;

    fn record(journal: &[&str], loaded: Vec<(f64, Probe)>) -> RunRecord {
        RunRecord {
            idle: vec![1.0],
            loaded,
            hog_start: 1_700_000_000.0,
            freed_at: Some(1_700_000_060.0),
            window_end: 1_700_000_080.0,
            contender_cpu_s: None,
            sshd_restarted: false,
            shell_dropped: false,
            notice_at: Some(1_700_000_004.3),
            bystander: "active".to_owned(),
            hog_state: "running".to_owned(),
            journal: journal.iter().map(|s| (*s).to_owned()).collect(),
            cgroup_events: None,
            contender_log: Vec::new(),
            members: None,
            notes: Vec::new(),
        }
    }

    const SUSPEND: &str = "1700000004.0 vm memtrace[250]: ERROR suspend [suspend] used 91 %; victim 612 (hog) 1 proc(s) | pids [612]";
    const RESUME: &str = "1700000061.0 vm memtrace[250]: ERROR resume [ok] used 60 % | pids [612] | resumed 612 (hog)";

    #[test]
    fn a_clean_run_passes() {
        let r = record(
            &[SUSPEND, RESUME],
            vec![(0.0, Probe::Ok(1.2)), (2.0, Probe::Ok(1.4))],
        );
        assert_eq!(problems(&r), Vec::<String>::new());
    }

    #[test]
    fn a_suspension_no_terminal_was_told_of_fails() {
        let mut r = record(&[SUSPEND, RESUME], vec![(0.0, Probe::Ok(1.2))]);
        r.notice_at = None;
        assert_eq!(
            problems(&r),
            ["the guard's notice never reached the ssh login shell's terminal"]
        );
    }

    #[test]
    fn a_hog_kept_held_with_its_reason_passes() {
        let wait = "1700000061.0 vm memtrace[250]: ERROR wait [ok] used 62.9 % < resume 75 %, 96 MiB below the suspend line, but not resumed: at its growth it would be back at the suspend line in 1.8 s | pids [612] | 612 (hog) 1 proc(s) growth +52.9 MiB/s holds 322.3 MiB";
        let keep = "1700000062.0 vm memtrace[250]: ERROR keep [ok] used 62.9 % < resume 75 %, 96 MiB below the suspend line, but not resumed: resumed 2 time(s) already and each time it grew back: kept held until it is resumed or killed by hand | pids [612] | 612 (hog) 1 proc(s)";
        for line in [wait, keep] {
            let r = record(&[SUSPEND, line], vec![(0.0, Probe::Ok(1.2))]);
            assert_eq!(problems(&r), Vec::<String>::new(), "{line}");
        }
    }

    #[test]
    fn a_resume_after_the_test_killed_the_hog_does_not_count() {
        let late = "1700000085.0 vm memtrace[250]: ERROR resume [ok] used 20 % | pids [612] | resumed 612 (hog)";
        let r = record(&[SUSPEND, late], vec![(0.0, Probe::Ok(1.2))]);
        assert_eq!(
            problems(&r),
            ["after the ballast was freed the hog was neither resumed nor said to be kept held"]
        );
    }

    #[test]
    fn each_broken_promise_is_named() {
        let mut r = record(
            &[
                "1700000004.0 vm memtrace[250]: ERROR suspend [suspend] used 91 %; victim 300 (bystander) 1 proc(s) | pids [300]",
                "1700000009.0 vm kernel: Out of memory: Killed process 612 (hog) total-vm:1MB",
            ],
            vec![(0.0, Probe::Ok(1.2)), (2.0, Probe::TimedOut)],
        );
        r.shell_dropped = true;
        r.bystander = "inactive".to_owned();
        let found = problems(&r);
        for needle in [
            "did not suspend the hog",
            "acted on bystander",
            "OOM kill",
            "probe(s) timed out",
            "shell",
            "bystander is",
            "neither resumed",
        ] {
            assert!(
                found.iter().any(|p| p.contains(needle)),
                "{needle:?} missing from {found:?}"
            );
        }
    }
}
