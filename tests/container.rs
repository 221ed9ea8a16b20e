//! Privileged tests of memtrace inside a container as rented GPU machines make them: memtrace
//! runs *inside* a memory-limited test cgroup (v1 or v2, whichever holds the memory controller),
//! with the capabilities a container's root lacks dropped (`setpriv`), and where it matters in
//! new pid and cgroup namespaces (`unshare`). Every hog lives in that cgroup, every loop is
//! bounded in time, and only processes the test started are killed (by PID).
mod support;

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use memtrace_testkit::proc::{alive, held, state};
use serde_json::Value;
use support::{
    MIB, TestCgroup,
    guard_env::{GuardRun, config, scenario, start_pipeline, state_dir, tmp, wait_until},
    memtrace_bin, output_within, require_root, test_cgroup, text,
};

/// The capabilities Docker's default set lacks and that memtrace could otherwise use.
const DROP_CAPS: [&str; 3] = [
    "--bounding-set=-sys_admin,-bpf,-perfmon,-sys_resource",
    "--inh-caps=-all",
    "--",
];

/// `memtrace ARGS` started inside `group` as a container's root: the capabilities dropped.
fn in_container(group: &TestCgroup, args: &[&str]) -> Command {
    let bin = memtrace_bin().display().to_string();
    let mut full: Vec<&str> = DROP_CAPS.to_vec();
    full.push(&bin);
    full.extend(args);
    group.command("setpriv", &full)
}

/// [`in_container`] in new pid and cgroup namespaces too (a private /proc, `/` as its cgroup).
fn in_namespaces(group: &TestCgroup, args: &[&str]) -> Command {
    let bin = memtrace_bin().display().to_string();
    let mut full = vec![
        "--cgroup",
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        "setpriv",
    ];
    full.extend(DROP_CAPS);
    full.push(&bin);
    full.extend(args);
    group.command("unshare", &full)
}

/// `memtrace ARGS` inside `group` with root's capabilities kept (a privileged container).
fn in_cgroup(group: &TestCgroup, args: &[&str]) -> Command {
    group.command(&memtrace_bin().display().to_string(), args)
}

fn json(output: &Output) -> Value {
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", text(&output.stdout)))
}

fn version(group: &TestCgroup) -> &'static str {
    match group.version {
        memtrace_host::cgroup::Version::V1 => "v1",
        memtrace_host::cgroup::Version::V2 => "v2",
    }
}

/// `status` in a 256 MiB cgroup shows that limit, not the host's RAM: with the capabilities
/// dropped, in new pid and cgroup namespaces, as text and JSON; `--machine` overrides.
#[test]
fn status_in_a_limited_cgroup_shows_the_container_limit() {
    require_root();
    let group = test_cgroup("ctr-status", 256 * MIB);
    let limit = 256 * MIB;
    let path = group.path.display().to_string();
    for (how, mut cmd) in [
        (
            "capabilities dropped",
            in_container(&group, &["status", "--json"]),
        ),
        (
            "pid + cgroup namespaces",
            in_namespaces(&group, &["status", "--json"]),
        ),
    ] {
        let report = json(&output_within(&mut cmd, Duration::from_secs(30)));
        let scope = &report["scope"];
        assert_eq!(scope["kind"], "container", "{how}: {scope}");
        assert_eq!(scope["limit_bytes"].as_u64(), Some(limit), "{how}: {scope}");
        assert_eq!(
            scope["path"].as_str(),
            Some(path.as_str()),
            "{how}: {scope}"
        );
        assert_eq!(scope["version"], version(&group), "{how}");
        assert!(scope["used_bytes"].as_u64().is_some_and(|u| u < limit));
        assert!(
            report["system"]["mem_total_bytes"]
                .as_u64()
                .is_some_and(|total| total > limit),
            "{how}: the host's RAM is still reported under system"
        );
    }
    let out = output_within(
        &mut in_container(&group, &["status"]),
        Duration::from_secs(30),
    );
    let stdout = text(&out.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("Limit: ")
            && first.contains(" of 256.0 MiB container limit (")
            && first.ends_with(&format!("cgroup {path} ({})", version(&group))),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("Host: RAM"))
    );
    let machine = json(&output_within(
        &mut in_container(&group, &["status", "--json", "--machine"]),
        Duration::from_secs(30),
    ));
    assert_eq!(machine["scope"]["kind"], "machine");
    assert_eq!(
        machine["scope"]["limit_bytes"],
        machine["system"]["mem_total_bytes"]
    );
}

/// `swap setup` in the container refuses before touching anything, naming the reason and the
/// alternative; without the capability even the dry run does. With the capability kept it still
/// refuses unless `--machine` says the host is meant.
#[test]
fn swap_setup_in_a_container_refuses_with_the_reason() {
    require_root();
    let group = test_cgroup("ctr-swap", 256 * MIB);
    let dir = tempfile::tempdir_in(tmp()).expect("temp dir");
    let swapfile = dir.path().join("swapfile").display().to_string();
    let fstab = dir.path().join("fstab");
    std::fs::write(&fstab, "UUID=x / ext4 defaults 0 1\n").expect("fstab");
    let fstab = fstab.display().to_string();
    let setup = [
        "swap", "setup", "1M", "--path", &swapfile, "--fstab", &fstab,
    ];
    let one_error = |out: &Output| -> String {
        assert!(!out.status.success(), "must fail: {}", text(&out.stdout));
        let stderr = text(&out.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("memtrace: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "one error line: {stderr}");
        errors[0].to_owned()
    };
    for dry_run in [true, false] {
        let mut args = setup.to_vec();
        if dry_run {
            args.push("--dry-run");
        }
        let line = one_error(&output_within(
            &mut in_container(&group, &args),
            Duration::from_secs(30),
        ));
        for needle in [
            "swapon needs CAP_SYS_ADMIN in the host's user namespace",
            "on the host",
            "ask the provider",
            "memory.swap.max",
        ] {
            assert!(
                line.contains(needle),
                "dry run {dry_run}: {needle:?} in {line}"
            );
        }
    }
    let mut dry = setup.to_vec();
    dry.push("--dry-run");
    let line = one_error(&output_within(
        &mut in_cgroup(&group, &dry),
        Duration::from_secs(30),
    ));
    assert!(
        line.contains("memtrace runs in a container (container limit 256.0 MiB")
            && line.contains("--machine"),
        "{line}"
    );
    dry.push("--machine");
    let out = output_within(&mut in_cgroup(&group, &dry), Duration::from_secs(30));
    assert!(
        !text(&out.stderr).contains("runs in a container"),
        "--machine lifts the refusal: {}",
        text(&out.stderr)
    );
    assert!(!Path::new(&swapfile).exists(), "nothing was created");
    assert_eq!(
        std::fs::read_to_string(&fstab).expect("fstab"),
        "UUID=x / ext4 defaults 0 1\n"
    );
    // `swap status` speaks of the container's limit and what it may use.
    let out = output_within(
        &mut in_container(&group, &["swap", "status"]),
        Duration::from_secs(30),
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("Limit:       256.0 MiB container limit (cgroup ")
            && stdout.contains("of it to this cgroup")
            && stdout.contains("for this limit"),
        "{stdout}"
    );
}

/// `memtrace guard` with no `--cgroup`, started inside the container's cgroup, picks that
/// cgroup by itself and suspends the growing pipeline before the cgroup's OOM killer fires,
/// leaving the bystander and the sshd stand-in alone; it resumes the pipeline when it stops.
#[test]
fn guard_picks_the_container_by_itself_and_holds_the_hog() {
    require_root();
    let states = state_dir();
    let state_file = states.path().join("guard-container.json");
    let config = config(&tmp(), "");
    let mut s = scenario("ctr-guard");
    let path = s.group.path.display().to_string();
    let (config, state_file) = (
        config.display().to_string(),
        state_file.display().to_string(),
    );
    let args = ["guard", "--config", &config, "--state-file", &state_file];
    let mut cmd = in_container(&s.group, &args);
    let mut guard = GuardRun::spawn(&mut cmd);
    s.group.track(guard.child.pid());
    let limit = format!("guarding container limit 512.0 MiB (cgroup {path}, ");
    assert!(
        guard.lines().iter().any(|l| l.contains(&limit)),
        "the guard picked the container's cgroup by itself: {:?}",
        guard.lines()
    );
    assert!(
        guard
            .lines()
            .iter()
            .any(|l| l.contains("running without eBPF: ")),
        "the guard reads /proc, as in a default container: {:?}",
        guard.lines()
    );
    let (parent, grower) = start_pipeline(&mut s.group);
    let was_held = wait_until(Duration::from_secs(30), || held(grower));
    assert!(was_held, "the grower is suspended: {:?}", state(grower));
    assert!(!s.group.saw_oom_kill(), "held before any OOM kill");
    for (name, pid) in [("bystander", s.chill.pid()), ("sshd", s.sshd.pid())] {
        assert!(
            matches!(state(pid), Some('S' | 'R')),
            "{name} untouched: {:?}",
            state(pid)
        );
    }
    let line = guard
        .line_with("suspend [")
        .expect("a suspend decision is logged");
    assert!(line.contains(&grower.to_string()), "{line}");
    guard.terminate();
    for pid in [grower, parent.pid(), s.chill.pid(), s.sshd.pid()] {
        assert!(
            alive(pid) && !held(pid),
            "{pid} alive and running after the guard"
        );
    }
}

/// `memtrace run` in the container says, before the pipeline starts, that the kernel OOM-kills
/// at the container's limit rather than at the host's RAM, and writes a trace `report` reads.
#[test]
fn run_in_a_container_names_its_limit() {
    require_root();
    let group = test_cgroup("ctr-run", 256 * MIB);
    let dir = tempfile::tempdir_in(tmp()).expect("temp dir");
    let out = dir.path().join("run.mtrace").display().to_string();
    let args = ["run", "--quiet", "--out", &out, "--", "true"];
    let mut cmd = in_container(&group, &args);
    let output = output_within(&mut cmd, Duration::from_secs(120));
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let expected = format!(
        "[memtrace] memory: container limit 256.0 MiB (cgroup {}, ",
        group.path.display()
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&expected))
        .unwrap_or_else(|| panic!("no limit line: {stderr}"));
    assert!(line.contains("not at the host's"), "{line}");
    assert!(Path::new(&out).is_file(), "the trace was written");
    let report = output_within(
        &mut in_container(&group, &["report", &out]),
        Duration::from_secs(30),
    );
    assert!(report.status.success(), "{}", text(&report.stderr));
    assert!(
        text(&report.stdout).contains("Peak"),
        "the report reads the trace: {}",
        text(&report.stdout)
    );
}
