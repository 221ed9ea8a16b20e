//! The last step of `cargo xtask test`'s guest run: a pipeline started in the foreground of an
//! ssh login shell, on the guest's pure cgroup v2, held by `memtrace guard` the way the ssh user
//! lives it. The hog shares its session's scope (`session-N.scope`) with the shell, so the
//! guard must move it into a child of that scope and freeze it: the shell prints no
//! "Stopped", the hog stays the terminal's foreground job, the guard's notice shows on that
//! terminal, and once `memtrace guard resume` lets it go, the Ctrl-C typed while it was held
//! ends it — the shell still answers. Then, on the same boot, `memtrace run` from an ssh
//! session ([`LIMITED_RUNS`]): the pipeline in a v2 cgroup of its own inside the run's transient
//! systemd scope in the ssh user's slice (or, with `--no-scope`, at the root of the hierarchy),
//! OOM-killed at `--memory-max`, throttled at `--memory-high` (the run's own guard sees no
//! pressure in either: those stalls are the pipeline's own), nothing left afterwards; and,
//! started inside a scope with `MemoryMax=`, the pipeline stays under that limit.
use std::{
    io::Write as _,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    bench::{
        ssh_events::{self, Actor},
        ssh_guest::{Contender, JOURNAL, SCRIPTS},
        ssh_run::{CMD_CAP, start_contender},
        ssh_site::Site,
        ssh_terminal::{CLOCK_COMMAND, HELD_NOTICE, TerminalLog},
    },
    vm::{
        guest::{Guest, Owned},
        image,
    },
};

/// The hog, typed at the prompt: 100 MiB/s until held (the guest has 1 GiB).
const HOG: &[u8] = b"/usr/local/bin/hog /root/hog.py 100\n";
/// Prints the hog's pid, its v2 cgroup, that cgroup's `frozen` flag, and its state, process
/// group and the terminal's foreground process group (`/proc/PID/stat` fields 3, 5 and 8).
const LOOK: &str = "pid=$(pgrep -x hog | head -n 1) && echo pid=$pid \
    && echo cgroup=$(sed -n 's/^0:://p' /proc/$pid/cgroup) \
    && echo $(grep frozen /sys/fs/cgroup$(sed -n 's/^0:://p' /proc/$pid/cgroup)/cgroup.events) \
    && echo stat=$(sed 's/.*) //' /proc/$pid/stat | cut -d' ' -f1,3,6)";

/// What [`LOOK`] printed.
#[derive(Debug, PartialEq)]
struct Look {
    pid: u32,
    cgroup: String,
    frozen: bool,
    state: String,
    pgrp: i64,
    tpgid: i64,
}

fn parse_look(text: &str) -> Option<Look> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
    };
    let stat: Vec<&str> = field("stat=")?.split_whitespace().collect();
    Some(Look {
        pid: field("pid=")?.parse().ok()?,
        cgroup: field("cgroup=")?.to_owned(),
        frozen: field("frozen ")? == "1",
        state: (*stat.first()?).to_owned(),
        pgrp: stat.get(1)?.parse().ok()?,
        tpgid: stat.get(2)?.parse().ok()?,
    })
}

/// What is wrong with the held hog as [`LOOK`] saw it (empty: nothing).
fn held_problems(look: &Look) -> Vec<String> {
    let mut out = Vec::new();
    let parent = look.cgroup.rsplit_once('/').map_or("", |(p, _)| p);
    let leaf = look.cgroup.rsplit('/').next().unwrap_or("");
    if !(parent.ends_with(".scope") && leaf.starts_with("memtrace-held-")) {
        out.push(format!(
            "the hog is in {}, not in a memtrace-held-… cgroup below its session's scope",
            look.cgroup
        ));
    }
    if !look.frozen {
        out.push(format!("its cgroup {} is not frozen", look.cgroup));
    }
    if look.state == "T" {
        out.push("it was stopped with a signal (state T)".to_owned());
    }
    if look.pgrp != look.tpgid {
        out.push(format!(
            "it is no longer the terminal's foreground job (pgrp {}, foreground {})",
            look.pgrp, look.tpgid
        ));
    }
    out
}

/// Boots the guest and runs the check; fails naming everything that went wrong.
pub fn run() -> anyhow::Result<()> {
    let image = image::build(image::Kernel::Stable)?;
    let vm = Guest::boot(&image, Duration::from_secs(300))?;
    match check(&vm).and_then(|()| {
        machine_guard_quiet(&vm, |vm| {
            run_limit_check(vm).and_then(|()| limit_kept_check(vm))
        })
    }) {
        Ok(()) => vm.shutdown(Duration::from_secs(30)),
        Err(err) => Err(err.context(format!("run directory {}", vm.dir().display()))),
    }
}

fn check(vm: &Guest) -> anyhow::Result<()> {
    for (name, text) in SCRIPTS {
        vm.ssh_input(&format!("cat > /root/{name}"), text.as_bytes(), CMD_CAP)?;
    }
    start_contender(vm, Site::Machine, Contender::Memtrace)?;
    let mut shell = Owned(
        vm.ssh_with(&["-tt"], "exec bash --login -i")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the ssh login shell")?,
    );
    let terminal = TerminalLog::follow(shell.0.stdout.take().context("the shell's output")?);
    let mut stdin = shell.0.stdin.take().context("the shell's input")?;
    stdin.write_all(CLOCK_COMMAND)?;
    if !terminal.wait_for("MEMTRACE-CLOCK 1", Duration::from_secs(60)) {
        bail!("the login shell never answered:\n{}", terminal.text());
    }
    stdin.write_all(HOG)?;
    let started = Instant::now();
    if !terminal.wait_for(HELD_NOTICE, Duration::from_secs(90)) {
        let journal = vm.ssh_output(JOURNAL, CMD_CAP).unwrap_or_default();
        bail!(
            "no notice on the ssh terminal within 90 s of the hog's start; terminal:\n{}\njournal:\n{journal}",
            terminal.text()
        );
    }
    eprintln!(
        "xtask:   the notice reached the ssh terminal {:.1} s after the hog started",
        started.elapsed().as_secs_f64()
    );
    // Give a "Stopped" (a SIGCHLD to the shell) time to show.
    std::thread::sleep(Duration::from_secs(1));
    let looked = vm.ssh_output(LOOK, CMD_CAP)?;
    let look = parse_look(&looked).with_context(|| format!("reading the hog: {looked:?}"))?;
    let mut problems = held_problems(&look);
    // Ctrl-C now: the terminal sends SIGINT to its foreground job, which acts on it once thawed.
    stdin.write_all(b"\x03")?;
    std::thread::sleep(Duration::from_millis(500));
    let resumed = vm.ssh_output(
        &format!("/usr/local/bin/memtrace guard resume {}", look.pid),
        CMD_CAP,
    );
    if let Err(err) = &resumed {
        problems.push(format!(
            "`memtrace guard resume {}` failed: {err:#}",
            look.pid
        ));
    }
    let gone = wait_gone(vm, look.pid, Duration::from_secs(30));
    if !gone {
        problems.push("the Ctrl-C typed while it was held did not end it once resumed".to_owned());
    }
    stdin.write_all(b"echo shell-answers-$((6 * 7))\n")?;
    if !terminal.wait_for("shell-answers-42", Duration::from_secs(30)) {
        problems.push("the shell did not answer after the hog ended".to_owned());
    }
    let journal = vm.ssh_output(JOURNAL, CMD_CAP).unwrap_or_default();
    let lines: Vec<String> = journal.lines().map(str::to_owned).collect();
    let actions = ssh_events::actions(&lines);
    let suspend = lines.iter().find(|l| l.contains(" suspend ["));
    match suspend {
        Some(line) if line.contains("froze cgroup") && line.contains("moved there from") => {}
        other => problems.push(format!(
            "the guard's suspension was not a move and freeze: {other:?}"
        )),
    }
    let held_at = actions
        .iter()
        .find(|a| a.actor == Actor::Memtrace && a.what == "suspend")
        .map(|a| a.at);
    let delay = held_at
        .zip(terminal.guest_time_of(HELD_NOTICE))
        .map(|(held, told)| told - held);
    let text = terminal.text();
    if text.contains("Stopped") {
        problems.push("the shell printed \"Stopped\"".to_owned());
    }
    if !text.contains("KeyboardInterrupt") {
        problems.push("the hog's KeyboardInterrupt never showed on the terminal".to_owned());
    }
    for line in lines.iter().filter(|l| l.contains("memtrace[")) {
        eprintln!("xtask:   | {line}");
    }
    // The terminal as its user saw it (control characters other than line ends dropped).
    for line in text.lines() {
        let shown: String = line.chars().filter(|c| !c.is_control()).collect();
        eprintln!("xtask:   ssh terminal | {shown}");
    }
    let _ = stdin.write_all(b"exit\n");
    drop(shell);
    if !problems.is_empty() {
        bail!(
            "the foreground job in the ssh shell: {}; terminal:\n{text}",
            problems.join("; ")
        );
    }
    println!(
        "xtask: guest run: a foreground job of an ssh login shell was moved below its session's scope ({}) and frozen, the notice showed on its terminal {} s after the action, no \"Stopped\", and the Ctrl-C typed while it was held ended it once resumed",
        look.cgroup,
        delay.map_or("?".to_owned(), |d| format!("{:.2}", d.max(0.0)))
    );
    Ok(())
}

/// How the pipeline shows where it runs: its first line is its own cgroup ([`ran_in`]).
const SHOW_CGROUP: &str = "sh -c 'echo pipeline-cgroup=$(sed -n s/^0:://p /proc/self/cgroup); \
    exec \"$@\"' hog";

/// The cgroup the pipeline said it ran in ([`SHOW_CGROUP`]).
fn ran_in(out: &str) -> Option<&str> {
    out.lines().find_map(|l| l.strip_prefix("pipeline-cgroup="))
}

/// One `memtrace run` of a hog from an ssh session, and what it must show.
struct LimitedRun {
    /// What it shows (`--memory-max` in a scope, ...).
    name: &'static str,
    /// What memtrace runs under (`timeout`), or nothing.
    wrapper: &'static str,
    /// memtrace's flags.
    flags: &'static str,
    /// The pipeline after the [`SHOW_CGROUP`] wrapper.
    pipeline: &'static str,
    /// Where the pipeline's cgroup must be: below a transient scope in the ssh user's slice, or
    /// at the root of the hierarchy.
    in_scope: bool,
    /// The exit status of the run.
    exit: u8,
    /// A line of the summary must contain each.
    summary: &'static [&'static str],
}

/// The runs: the OOM kill at `--memory-max` in the run's scope and (`--no-scope`) at the root of
/// the hierarchy, and throttling at `--memory-high`, which lets the hog live until `timeout`
/// stops memtrace and memtrace stops its pipeline. The `timeout` runs outside the throttled
/// cgroup: inside, its own pages are reclaimed there, and each fault it takes to wake is
/// throttled too (it took 9–42 s to end an 8 s run in a busy guest).
const LIMITED_RUNS: &[LimitedRun] = &[
    LimitedRun {
        name: "--memory-max 64M in a transient scope",
        wrapper: "",
        flags: "--memory-max 64M",
        pipeline: "/usr/local/bin/hog /root/hog.py 0",
        in_scope: true,
        exit: 137,
        summary: &["of --memory-max 64.0 MiB, 1 OOM kill inside it"],
    },
    LimitedRun {
        name: "--memory-high 48M in a transient scope",
        wrapper: "timeout --preserve-status 8",
        flags: "--memory-high 48M",
        pipeline: "/usr/local/bin/hog /root/hog.py 0",
        in_scope: true,
        // SIGTERM, forwarded by memtrace to the hog.
        exit: 143,
        summary: &[
            ", --memory-high 48.0 MiB, throttled above memory.high ",
            ", no OOM kill",
        ],
    },
    LimitedRun {
        name: "--memory-max 64M with --no-scope",
        wrapper: "",
        flags: "--no-scope --memory-max 64M",
        pipeline: "/usr/local/bin/hog /root/hog.py 0",
        in_scope: false,
        exit: 137,
        summary: &["of --memory-max 64.0 MiB, 1 OOM kill inside it"],
    },
];

impl LimitedRun {
    /// The shell command: the run (stdout and stderr), its exit status, then the `memtrace-run-*`
    /// cgroups and systemd units left anywhere.
    fn command(&self) -> String {
        format!(
            "cd /tmp && {} /usr/local/bin/memtrace run --quiet {} -o /tmp/run-limited.mtrace -- \
             {SHOW_CGROUP} {} 2>&1; echo exit=$?; \
             echo left=$(find /sys/fs/cgroup -name 'memtrace-run-*' | wc -l); \
             echo units=$(systemctl list-units --all --no-legend 'memtrace-run-*' | wc -l)",
            self.wrapper, self.flags, self.pipeline
        )
    }

    /// What is wrong with its output (empty: nothing).
    fn problems(&self, out: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let own = out
            .lines()
            .find_map(|l| l.strip_prefix("[memtrace] the pipeline runs in its own cgroup "));
        let ran_in = ran_in(out);
        let placed = match (own, ran_in) {
            (Some(own), Some(ran_in)) if self.in_scope => {
                // In the ssh user's slice, in the run's scope, and said so.
                let scope = ran_in
                    .strip_prefix("/user.slice/user-0.slice/memtrace-run-")
                    .and_then(|rest| rest.strip_suffix(".scope/pipeline"));
                scope.is_some_and(|pid| {
                    own == format!(
                        "/sys/fs/cgroup{ran_in} (transient systemd scope memtrace-run-{pid}.scope)"
                    )
                })
            }
            (Some(own), Some(ran_in)) => {
                ran_in.starts_with("/memtrace-run-")
                    && own == format!("/sys/fs/cgroup{ran_in} (no systemd scope: --no-scope)")
            }
            _ => false,
        };
        if !placed {
            problems.push(format!(
                "not in the expected cgroup of its own: memtrace said {own:?}, the pipeline ran in {ran_in:?}"
            ));
        }
        let summary = out.lines().find(|l| l.starts_with("[memtrace] cgroup "));
        if !summary.is_some_and(|l| self.summary.iter().all(|part| l.contains(part))) {
            problems.push(format!("the summary {summary:?} lacks {:?}", self.summary));
        }
        // The pipeline's stalls at its own limit are no pressure on the machine (1 GiB, mostly
        // free): the run's guard neither raises its level nor acts.
        if let Some(saw) = out
            .lines()
            .find(|l| l.starts_with("[memtrace] the guard ") || l.contains("] guard: "))
        {
            problems.push(format!("the run's guard saw pressure: {saw}"));
        }
        if !out.lines().any(|l| l == format!("exit={}", self.exit)) {
            problems.push(format!("the run did not exit with {}", self.exit));
        }
        if !out.lines().any(|l| l == "left=0") {
            problems.push("a memtrace-run cgroup was left behind".to_owned());
        }
        if !out.lines().any(|l| l == "units=0") {
            problems.push("a memtrace-run systemd unit was left behind".to_owned());
        }
        problems
    }
}

/// Runs each of [`LIMITED_RUNS`] in the guest; fails naming what went wrong.
fn run_limit_check(vm: &Guest) -> anyhow::Result<()> {
    for run in LIMITED_RUNS {
        let out = vm.ssh_output(&run.command(), CMD_CAP)?;
        for line in out.lines() {
            eprintln!("xtask:   run {} | {line}", run.name);
        }
        let problems = run.problems(&out);
        if !problems.is_empty() {
            bail!(
                "memtrace run {} on cgroup v2: {}",
                run.name,
                problems.join("; ")
            );
        }
        println!(
            "xtask: guest run: `memtrace run {}` on cgroup v2: the pipeline ran in a cgroup of its own, limited as asked, exit {}, nothing left behind",
            run.flags, run.exit
        );
    }
    Ok(())
}

/// `memtrace run` started inside a scope with `MemoryMax=` (as from a service with a limit):
/// the pipeline must stay under that limit, so the run makes no cgroup of its own.
fn under_a_limit() -> String {
    format!(
        "cd /tmp && systemd-run --scope --quiet -p MemoryMax=512M \
         /usr/local/bin/memtrace run --quiet -o /tmp/run-kept.mtrace -- {SHOW_CGROUP} true 2>&1; \
         echo exit=$?"
    )
}

/// What is wrong with [`under_a_limit`]'s output (empty: nothing).
fn limit_kept_problems(out: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let ran_in = ran_in(out).unwrap_or_default();
    // systemd-run's own scope (`run-uN.scope`), not one of memtrace's.
    if !(ran_in.contains("/run-") && ran_in.ends_with(".scope")) || ran_in.contains("memtrace-run")
    {
        problems.push(format!(
            "the pipeline left the limited scope: it ran in {ran_in:?}"
        ));
    }
    if !out.lines().any(|l| {
        l.starts_with(
            "[memtrace] info: the pipeline runs without a cgroup of its own: its cgroup /",
        ) && l.contains("has a memory limit")
    }) {
        problems.push("no line saying why it has no cgroup of its own".to_owned());
    }
    if !out.lines().any(|l| l == "exit=0") {
        problems.push("the run did not exit with 0".to_owned());
    }
    problems
}

/// Runs [`under_a_limit`] in the guest; fails naming what went wrong.
fn limit_kept_check(vm: &Guest) -> anyhow::Result<()> {
    let out = vm.ssh_output(&under_a_limit(), CMD_CAP)?;
    for line in out.lines() {
        eprintln!("xtask:   run under MemoryMax | {line}");
    }
    let problems = limit_kept_problems(&out);
    if !problems.is_empty() {
        bail!(
            "memtrace run under a MemoryMax scope: {}",
            problems.join("; ")
        );
    }
    println!(
        "xtask: guest run: `memtrace run` inside a scope with MemoryMax=512M kept its pipeline there (no scope or cgroup of its own that would leave the limit)"
    );
    Ok(())
}

/// The machine guard's journal.
const GUARD_JOURNAL: &str = "journalctl -b -u memtrace-guard --no-pager -o cat";

/// Runs `checks`, then fails if the machine's guard (started by [`check`], still running) acted
/// or counted PSI meanwhile: the stalls of the limited runs at their own limits are no pressure
/// on the machine (1 GiB, mostly free), and the pipelines are none of its business.
fn machine_guard_quiet(
    vm: &Guest,
    checks: impl FnOnce(&Guest) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let before: usize = vm
        .ssh_output(&format!("{GUARD_JOURNAL} | wc -l"), CMD_CAP)?
        .trim()
        .parse()
        .context("counting the guard's journal lines")?;
    checks(vm)?;
    let log = vm.ssh_output(
        &format!("{GUARD_JOURNAL} | tail -n +{}", before + 1),
        CMD_CAP,
    )?;
    for line in log.lines() {
        eprintln!("xtask:   machine guard | {line}");
    }
    let acted = guard_acted(&log);
    if !acted.is_empty() {
        bail!(
            "the machine's guard took the limited runs' stalls for pressure on the machine: {}",
            acted.join(" / ")
        );
    }
    println!(
        "xtask: guest run: the machine's guard ran through the limited runs and neither acted nor counted their stalls ({} of its lines said whose stalls they were)",
        log.lines()
            .filter(|l| l.contains("at its own memory limit"))
            .count()
    );
    Ok(())
}

/// The guard's lines that act (errors: reclaim, suspend, kill, resume) or count PSI.
fn guard_acted(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("Z ERROR]") || (l.contains("Z WARN ]") && l.contains("PSI")))
        .collect()
}

/// Whether process `pid` is gone within `limit`.
fn wait_gone(vm: &Guest, pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if vm
            .ssh_output(&format!("test ! -e /proc/{pid} && echo gone"), CMD_CAP)
            .is_ok_and(|out| out.contains("gone"))
        {
            return true;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    false
}

#[cfg(test)]
mod tests {
    //! Reading the held hog, and what a held foreground job must look like.
    use super::*;

    const HELD: &str = "pid=612\ncgroup=/user.slice/user-0.slice/session-3.scope/memtrace-held-250-612\nfrozen 1\nstat=S 612 612\n";

    #[test]
    fn a_limited_run_is_checked_for_its_cgroup_its_limit_and_its_cleanup() {
        let [max, high, root] = [&LIMITED_RUNS[0], &LIMITED_RUNS[1], &LIMITED_RUNS[2]];
        let scope = "/user.slice/user-0.slice/memtrace-run-377.scope/pipeline";
        let good = format!(
            "[memtrace] the pipeline runs in its own cgroup /sys/fs/cgroup{scope} (transient systemd scope memtrace-run-377.scope)\n\
             pipeline-cgroup={scope}\n\
             [memtrace] cgroup /sys/fs/cgroup{scope}: peak 64.0 MiB of --memory-max 64.0 MiB, 1 OOM kill inside it (the pipeline hit its own limit)\n\
             exit=137\nleft=0\nunits=0\n"
        );
        assert_eq!(max.problems(&good), Vec::<String>::new());
        assert_eq!(max.problems("exit=0\nleft=1\n").len(), 5);
        let throttled = format!(
            "[memtrace] the pipeline runs in its own cgroup /sys/fs/cgroup{scope} (transient systemd scope memtrace-run-377.scope)\n\
             pipeline-cgroup={scope}\n\
             [memtrace] cgroup /sys/fs/cgroup{scope}: peak 56.0 MiB, --memory-high 48.0 MiB, throttled above memory.high 31 times, no OOM kill\n\
             exit=143\nleft=0\nunits=0\n"
        );
        assert_eq!(high.problems(&throttled), Vec::<String>::new());
        // In the scope is not where --no-scope must run.
        assert_eq!(root.problems(&good).len(), 1);
        for saw in [
            "[memtrace] the guard suspended the pipeline (suspend, pids [473]): PSI full avg10 15.8 % >= 10 %",
            "[2026-12-05T20:22:06Z WARN ] guard: warn [suspend] PSI full avg10 35.0 % >= 10 %",
        ] {
            let acted = throttled.replace("exit=143", &format!("{saw}\nexit=143"));
            assert_eq!(high.problems(&acted).len(), 1, "{saw}");
        }
        let at_root = "[memtrace] the pipeline runs in its own cgroup /sys/fs/cgroup/memtrace-run-377 (no systemd scope: --no-scope)\n\
             pipeline-cgroup=/memtrace-run-377\n\
             [memtrace] cgroup /sys/fs/cgroup/memtrace-run-377: peak 64.0 MiB of --memory-max 64.0 MiB, 1 OOM kill inside it (the pipeline hit its own limit)\n\
             exit=137\nleft=0\nunits=0\n";
        assert_eq!(root.problems(at_root), Vec::<String>::new());
        assert!(
            max.command()
                .contains("memtrace run --quiet --memory-max 64M -o")
        );
    }

    #[test]
    fn the_machine_guard_acting_on_a_limited_run_is_named() {
        let quiet = "[2026-12-06T02:00:29Z INFO ] memory stalls of /sys/fs/cgroup/user.slice/user-0.slice/memtrace-run-384.scope/pipeline at its own memory limit: not pressure on the scope\n\
            [2026-12-06T02:00:30Z WARN ] level [ok] warn → ok\n";
        assert_eq!(guard_acted(quiet), Vec::<&str>::new());
        let acted = "[2026-12-06T02:00:30Z WARN ] warn [warn] PSI trigger fired | 389 (hog)\n\
            [2026-12-06T02:00:31Z ERROR] suspend [suspend] PSI full avg10 20.0 % >= 10 %\n";
        assert_eq!(guard_acted(acted).len(), 2);
    }

    #[test]
    fn a_run_under_a_limit_is_checked_for_staying_there() {
        let good = "[memtrace] info: the pipeline runs without a cgroup of its own: its cgroup /system.slice/run-u12.scope has a memory limit that the pipeline would leave in a transient scope or a cgroup at the root of the hierarchy\n\
             pipeline-cgroup=/system.slice/run-u12.scope\nexit=0\n";
        assert_eq!(limit_kept_problems(good), Vec::<String>::new());
        let escaped = "pipeline-cgroup=/system.slice/memtrace-run-40.scope/pipeline\nexit=0\n";
        assert_eq!(limit_kept_problems(escaped).len(), 2);
    }

    #[test]
    fn a_hog_frozen_below_its_scope_in_the_foreground_passes() {
        let look = parse_look(HELD).expect("parsed");
        assert_eq!(look.pid, 612);
        assert_eq!(held_problems(&look), Vec::<String>::new());
    }

    #[test]
    fn a_stopped_backgrounded_or_unmoved_hog_is_named() {
        let stopped = HELD
            .replace("frozen 1", "frozen 0")
            .replace("stat=S 612 612", "stat=T 612 400")
            .replace("/memtrace-held-250-612", "");
        let found = held_problems(&parse_look(&stopped).expect("parsed"));
        for needle in [
            "not in a memtrace-held",
            "not frozen",
            "state T",
            "foreground",
        ] {
            assert!(
                found.iter().any(|p| p.contains(needle)),
                "{needle:?} missing from {found:?}"
            );
        }
        assert_eq!(parse_look("pid=612\n"), None);
    }
}
