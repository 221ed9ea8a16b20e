//! How output failures end, end to end through the built binary as root: a closed or full
//! stdout (a quiet 141 or one error line, never a panic), an export or HTML report onto a full
//! tmpfs (no partial file, the old one kept), a `run`/`record` that fails to start (no trace
//! file). Every mount and directory is undone by a Drop guard even when an assertion fails.
mod support;

use std::{
    fs,
    path::Path,
    process::{Output, Stdio},
    time::Duration,
};

use memtrace_testkit::files::entry_names as names;
use support::{
    cli::{Scratch, assert_refused, run_memtrace, run_to, small_tmpfs},
    describe, text,
};

/// `memtrace ARGS` with stdout on a pipe whose reader is already gone.
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    run_to(
        support::memtrace().args(args).env("RUST_LOG", "warn"),
        Stdio::from(writer),
    )
}

/// Commands that print, with the trace `report` reads.
fn printing_commands(trace: &str) -> Vec<Vec<String>> {
    let lists: [&[&str]; 8] = [
        &["status"],
        &["status", "--json"],
        &["swap", "status"],
        &["guard", "--print-config"],
        &["completions", "bash"],
        &["report", trace],
        &["report", trace, "--json"],
        &["doctor", "--json"],
    ];
    lists
        .iter()
        .map(|l| l.iter().map(|a| (*a).to_owned()).collect())
        .collect()
}

#[test]
fn closed_stdout_ends_quietly_with_the_sigpipe_status() {
    support::require_root();
    let scratch = Scratch::new("epipe");
    let trace = scratch.path("t.mtrace");
    support::synthetic_trace::synthetic(&trace, 30, 5, 2);
    for args in printing_commands(&trace.display().to_string()) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_into_closed_pipe(&args);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {}", describe(&out));
        assert!(out.stderr.is_empty(), "{args:?}: {}", describe(&out));
    }

    // The live loop: `memtrace top --json | head -c100`.
    let mut top = support::spawn(
        support::memtrace()
            .args(["top", "--json", "--interval", "100ms"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stdout = top.child_mut().stdout.take().expect("piped stdout");
    let mut first = [0u8; 100];
    std::io::Read::read_exact(&mut stdout, &mut first).expect("top printed 100 bytes");
    drop(stdout);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = top.exited() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            top.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = top.child_mut().stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("stderr");
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(141),
        "top after its reader left: {status:?}, stderr {stderr:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn full_stdout_is_one_error_line() {
    support::require_root();
    let scratch = Scratch::new("enospc");
    let trace = scratch.path("t.mtrace");
    support::synthetic_trace::synthetic(&trace, 30, 5, 2);
    for args in printing_commands(&trace.display().to_string()) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let full = fs::File::options()
            .write(true)
            .open("/dev/full")
            .expect("opening /dev/full");
        let out = run_to(
            support::memtrace().args(&args).env("RUST_LOG", "warn"),
            Stdio::from(full),
        );
        assert_ne!(
            out.status.code(),
            Some(101),
            "{args:?} panicked: {}",
            describe(&out)
        );
        assert_refused(&out, "writing to stdout: No space left on device");
    }
}

/// Fills the filesystem of `dir` up to the last byte with one file.
fn fill_up(dir: &Path) {
    let mut filler = fs::File::create(dir.join("filler")).expect("filler");
    let chunk = vec![0u8; 4096];
    loop {
        match std::io::Write::write(&mut filler, &chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.raw_os_error() == Some(28) => break,
            Err(err) => panic!("filling the tmpfs: {err}"),
        }
    }
}

#[test]
fn exports_and_html_reports_onto_a_full_disk_leave_no_partial_file() {
    support::require_root();
    let scratch = Scratch::new("fulldisk");
    let trace = scratch.path("t.mtrace");
    support::synthetic_trace::synthetic(&trace, 120, 10, 3);
    let trace_arg = trace.display().to_string();
    let mnt = scratch.path("mnt");
    let _mounted = small_tmpfs(&mnt, "1m");
    let old = mnt.join("out.jsonl");
    fs::write(&old, b"the old export\n").expect("write");
    fill_up(&mnt);

    let out_arg = old.display().to_string();
    let out = run_memtrace(&["export", &trace_arg, "-f", "jsonl", "-o", &out_arg]);
    assert_refused(&out, "No space left on device");
    let now = fs::read(&old).expect("read");
    assert!(
        now == b"the old export\n",
        "the old export was replaced by {} bytes",
        now.len()
    );
    let html = mnt.join("report.html");
    let html_arg = html.display().to_string();
    let out = run_memtrace(&["report", &trace_arg, "--html", &html_arg]);
    assert_refused(&out, "No space left on device");
    assert_eq!(
        names(&mnt),
        ["filler", "out.jsonl"],
        "no partial HTML report, no temporary file"
    );

    // With room again, both are written whole.
    fs::remove_file(mnt.join("filler")).expect("rm filler");
    let out = run_memtrace(&["export", &trace_arg, "-f", "jsonl", "-o", &out_arg]);
    assert!(out.status.success(), "{}", describe(&out));
    let exported = fs::read_to_string(&old).expect("read");
    assert!(
        exported.lines().count() > 120,
        "{} lines",
        exported.lines().count()
    );
    let out = run_memtrace(&["report", &trace_arg, "--html", &html_arg]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(fs::read_to_string(&html).expect("read").contains("</html>"));
    assert_eq!(names(&mnt), ["out.jsonl", "report.html"]);
}

#[test]
fn run_and_record_that_fail_to_start_leave_no_trace() {
    support::require_root();
    let scratch = Scratch::new("failedrun");
    let cases: [(&str, Vec<&str>); 3] = [
        ("run.mtrace", vec!["run", "--out"]),
        ("record.mtrace", vec!["record", "-o"]),
        ("attach.mtrace", vec!["record", "--pid", "4194305", "-o"]),
    ];
    for (name, prefix) in cases {
        let path = scratch.arg(name);
        let mut args = prefix.clone();
        args.push(&path);
        if !prefix.contains(&"--pid") {
            args.extend(["--", "/nonexistent/command"]);
        }
        let out = run_memtrace(&args);
        assert!(!out.status.success(), "{args:?}: {}", describe(&out));
        let stderr = text(&out.stderr);
        assert!(
            stderr.lines().any(|l| l.starts_with("memtrace: error: ")),
            "{args:?}: {}",
            describe(&out)
        );
        assert!(
            !Path::new(&path).exists(),
            "{args:?} left a trace behind: {}",
            describe(&out)
        );
    }
}
