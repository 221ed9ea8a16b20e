//! Hostile inputs through the built binary, as root: a FIFO, `/dev/zero`, a symbolic link to
//! `/dev/zero` and an oversized file given to `guard --config`, `run --config`, `report` and
//! `export` are each refused at once with one `memtrace: error:` line and a non-zero exit (they
//! used to block forever, or read until the OOM killer came); and a crafted 607 KB trace that
//! used to need more than 1 GiB is reported within 256 MiB. Every command runs in a memory
//! cgroup with a limit and is killed by pid after a timeout, so a regression fails the test
//! instead of hanging or exhausting the machine.
use std::{path::Path, process::Output, time::Duration};

use memtrace::record::trace::{
    Header,
    codec::{ProcIdent, encode_ident, put_varint},
    frame::{self, kind},
    reader::MAX_FILE_BYTES,
};

use super::{
    finish, scratch,
    support::{MIB, memtrace_bin, require_root, test_cgroup},
    text,
};

/// No refusal may take longer (each is immediate; a blocked read is what this catches).
const LIMIT: Duration = Duration::from_secs(20);

/// `memtrace ARGS` in a memory cgroup of 256 MiB, killed after `limit`.
fn limited(name: &str, args: &[&str], limit: Duration) -> (Output, u64, bool) {
    let group = test_cgroup(name, 256 * MIB);
    let bin = memtrace_bin().display().to_string();
    let output = finish(&mut group.command(&bin, args), limit);
    let peak_file = match group.version {
        memtrace_host::cgroup::Version::V1 => "memory.max_usage_in_bytes",
        memtrace_host::cgroup::Version::V2 => "memory.peak",
    };
    let peak = std::fs::read_to_string(group.path.join(peak_file))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    let oom = group.saw_oom_kill();
    (output, peak, oom)
}

/// Exactly one stderr line, `memtrace: error: …` containing `want`, and a non-zero exit.
fn refused(what: &str, args: &[&str], want: &str) {
    let (output, _, _) = limited("inputs", args, LIMIT);
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!output.status.success(), "{what}: accepted\n{stderr}");
    assert_eq!(lines.len(), 1, "{what}: one line expected:\n{stderr}");
    assert!(
        lines[0].starts_with("memtrace: error: ") && lines[0].contains(want),
        "{what}: want {want:?} in:\n{stderr}"
    );
}

/// The four commands that read a file the user names, given `path`.
fn every_reader(path: &Path, want: &str) {
    let p = path.display().to_string();
    let out = scratch("inputs-out").display().to_string();
    let run_out = scratch("inputs-run.mtrace").display().to_string();
    refused(
        &format!("guard --config {p}"),
        &["guard", "--dry-run", "--exit-after", "5s", "--config", &p],
        want,
    );
    refused(
        &format!("run --config {p}"),
        &["run", "--config", &p, "--out", &run_out, "--", "true"],
        want,
    );
    refused(&format!("report {p}"), &["report", &p], want);
    refused(
        &format!("export {p}"),
        &["export", &p, "--format", "csv", "-o", &out],
        want,
    );
}

/// FIFOs, devices and links to devices: refused at once (they used to block forever or read
/// until the OOM killer).
#[test]
fn fifos_and_devices_are_refused_at_once() {
    require_root();
    let fifo = scratch("inputs.fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    every_reader(&fifo, "not a regular file (a FIFO)");
    every_reader(
        Path::new("/dev/zero"),
        "not a regular file (a character device)",
    );
    let link = scratch("inputs-zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
    every_reader(
        &link,
        "not a regular file (a symbolic link to a character device)",
    );
    let _ = std::fs::remove_file(&fifo);
    let _ = std::fs::remove_file(&link);
}

/// Files larger than the cap: refused before they are read, the cap named.
#[test]
fn oversized_files_are_refused_naming_the_cap() {
    require_root();
    let config = scratch("inputs-big.toml");
    std::fs::write(&config, "# padding\n".repeat(110_000)).expect("a 1.1 MB config");
    let p = config.display().to_string();
    for args in [
        vec!["guard", "--dry-run", "--exit-after", "5s", "--config", &p],
        vec!["run", "--config", &p, "--", "true"],
    ] {
        refused(
            &args.join(" "),
            &args,
            "larger than 1.0 MiB, the most memtrace reads from a config file",
        );
    }
    // A sparse file one byte over the trace cap: refused by its size, never read.
    let trace = scratch("inputs-big.mtrace");
    std::fs::File::create(&trace)
        .and_then(|f| f.set_len(MAX_FILE_BYTES + 1))
        .expect("sparse trace");
    let t = trace.display().to_string();
    refused(
        "report of 1 GiB + 1",
        &["report", &t],
        "larger than 1.0 GiB, the most memtrace reads from a trace",
    );
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&trace);
}

/// A 607 KB trace: 20 000 processes named and written once, then ~30 000 samples in which
/// nothing changes. The reader used to copy every process into every sample (> 1 GiB, killed
/// at any limit below); now `memtrace report` reads it within 256 MiB. Its peak is printed.
#[test]
fn crafted_trace_is_reported_in_bounded_memory() {
    require_root();
    let path = scratch("inputs-crafted.mtrace");
    let mut data = memtrace::record::trace::MAGIC.to_vec();
    data.extend_from_slice(&memtrace::record::trace::VERSION.to_le_bytes());
    let header = Header {
        start_unix_ms: 1_700_000_000_000,
        interval_ms: 1000,
        scope: "crafted".into(),
        ..Header::default()
    };
    let json = serde_json::to_vec(&header).expect("header");
    data.extend_from_slice(&frame::encode(kind::HEADER, &json));
    let n = 20_000u32;
    for slot in 0..n {
        let ident = ProcIdent {
            pid: 1000 + slot,
            ppid: 1,
            comm: "p".into(),
            ..ProcIdent::default()
        };
        data.extend_from_slice(&frame::encode(kind::PROC, &encode_ident(slot, &ident)));
    }
    let mut first = bytes_of(&[2, 0, 0, 0, u64::from(n)]);
    for slot in 0..n {
        // Slot step, mask ANON, +25 600 pages (100 MiB) each.
        first.extend(bytes_of(&[u64::from(slot > 0), 1, 51_200]));
    }
    data.extend_from_slice(&frame::encode(kind::SAMPLE, &first));
    let empty = frame::encode(kind::SAMPLE, &bytes_of(&[2000, 0, 0, 0, 0]));
    while data.len() + empty.len() <= 607_000 {
        data.extend_from_slice(&empty);
    }
    std::fs::write(&path, &data).expect("write");
    let p = path.display().to_string();
    let (output, peak, oom) = limited("inputs-crafted", &["report", &p], Duration::from_secs(120));
    eprintln!(
        "memtrace report of the crafted {} KB trace: peak {} MiB of the cgroup",
        data.len() / 1000,
        peak / MIB
    );
    assert!(!oom, "OOM-killed in 256 MiB");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("samples over"), "{stdout}");
    assert!(stdout.contains("Peak host memory: 1953.1 GiB"), "{stdout}");
    let _ = std::fs::remove_file(&path);
}

/// Varints, concatenated.
fn bytes_of(values: &[u64]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    for v in values {
        put_varint(&mut out, *v);
    }
    out.to_vec()
}
