//! The last step of `cargo xtask test`'s guest run: a pipeline started in the foreground of an
//! ssh login shell, on the guest's pure cgroup v2, held by `memtrace guard` the way the ssh user
//! lives it. The hog shares its session's scope (`session-N.scope`) with the shell, so the
//! guard must move it into a child of that scope and freeze it: the shell prints no
//! "Stopped", the hog stays the terminal's foreground job, the guard's notice shows on that
//! terminal, and once `memtrace guard resume` lets it go, the Ctrl-C typed while it was held
//! ends it — the shell still answers. Then, on the same boot, `memtrace run --memory-max`
//! from an ssh session: the pipeline in a v2 cgroup of its own, OOM-killed at its own limit,
//! the cgroup gone afterwards.
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
    match check(&vm).and_then(|()| run_limit_check(&vm)) {
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

/// `memtrace run --memory-max 64M` of a hog, from an ssh session; its output (stdout and stderr)
/// and exit status, then the `memtrace-run-*` cgroups left anywhere.
const RUN_LIMITED: &str = "cd /tmp && /usr/local/bin/memtrace run --quiet --memory-max 64M \
    -o /tmp/run-limited.mtrace -- /usr/local/bin/hog /root/hog.py 0 2>&1; echo exit=$?; \
    echo left=$(find /sys/fs/cgroup -name 'memtrace-run-*' | wc -l)";

/// What is wrong with [`RUN_LIMITED`]'s output (empty: nothing).
fn run_limit_problems(out: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let own = out
        .lines()
        .find_map(|l| l.strip_prefix("[memtrace] the pipeline runs in its own cgroup "));
    match own {
        Some(dir) if dir.starts_with("/sys/fs/cgroup/") && !dir.contains(" and ") => {}
        other => problems.push(format!("not in a v2 cgroup of its own: {other:?}")),
    }
    if !out.lines().any(|l| {
        l.contains("of --memory-max 64.0 MiB, 1 OOM kill inside it") && l.contains(": peak ")
    }) {
        problems.push("no summary of a peak at --memory-max with its OOM kill".to_owned());
    }
    if !out.lines().any(|l| l == "exit=137") {
        problems.push("the run did not end with the pipeline's SIGKILL (137)".to_owned());
    }
    if !out.lines().any(|l| l == "left=0") {
        problems.push("its cgroup was left behind".to_owned());
    }
    problems
}

/// Runs [`RUN_LIMITED`] in the guest; fails naming what went wrong.
fn run_limit_check(vm: &Guest) -> anyhow::Result<()> {
    let out = vm.ssh_output(RUN_LIMITED, CMD_CAP)?;
    for line in out.lines() {
        eprintln!("xtask:   run | {line}");
    }
    let problems = run_limit_problems(&out);
    if !problems.is_empty() {
        bail!(
            "memtrace run --memory-max on cgroup v2: {}",
            problems.join("; ")
        );
    }
    println!(
        "xtask: guest run: `memtrace run --memory-max 64M` on cgroup v2 put the pipeline in a cgroup of its own, where the kernel OOM-killed it at 64 MiB, and removed the cgroup"
    );
    Ok(())
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
    fn a_limited_run_is_checked_for_its_own_cgroup_its_oom_kill_and_its_cleanup() {
        let good = "[memtrace] the pipeline runs in its own cgroup /sys/fs/cgroup/memtrace-run-377\n\
            [memtrace] cgroup /sys/fs/cgroup/memtrace-run-377: peak 64.0 MiB of --memory-max 64.0 MiB, 1 OOM kill inside it (the pipeline hit its own limit)\n\
            exit=137\nleft=0\n";
        assert_eq!(run_limit_problems(good), Vec::<String>::new());
        assert_eq!(run_limit_problems("exit=0\nleft=1\n").len(), 4);
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
