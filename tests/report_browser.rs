//! The HTML report opened in a real browser (Debian's Chromium, headless, installed by `cargo
//! xtask test`): it renders without a console message, its chart is an SVG of a real size, and
//! a screenshot is saved under target/ (the README shows one). A control page proves the
//! console check would catch a message.
mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use support::{guard_env::tmp, memtrace, synthetic_trace::synthetic};

fn chromium() -> PathBuf {
    let path = PathBuf::from("/usr/bin/chromium");
    assert!(
        path.is_file(),
        "chromium is missing: `cargo xtask test` installs Debian's chromium package"
    );
    path
}

/// Headless Chromium on `page` with `extra` arguments (a fresh profile each time, no network
/// chatter, console messages logged to stderr).
fn browse(page: &Path, extra: &[&str]) -> Output {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,1000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(format!("file://{}", page.display()));
    support::output_within(&mut cmd, Duration::from_secs(60))
}

/// The console messages Chromium logged for the page.
fn console_messages(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn html_report_renders_in_chromium_with_a_sized_chart_and_no_console_messages() {
    let dir = tmp().join(format!("browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");

    // The control: a console message on a page is seen.
    let control = dir.join("control.html");
    std::fs::write(
        &control,
        "<html><body><script>console.error('control-message')</script></body></html>",
    )
    .expect("control page");
    let seen = console_messages(&browse(&control, &["--dump-dom"]));
    assert!(
        seen.iter().any(|m| m.contains("control-message")),
        "the console check sees nothing: {seen:?}"
    );

    // A report of a two-minute synthetic run with stage marks.
    let trace = dir.join("run.mtrace");
    synthetic(&trace, 120, 4, 2);
    let html = dir.join("report.html");
    let out = memtrace()
        .arg("report")
        .arg(&trace)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("memtrace report");
    assert!(out.status.success(), "{out:?}");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/")
        .join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let rendered = browse(&html, &[&format!("--screenshot={}", shot.display())]);
    assert!(rendered.status.success(), "{rendered:?}");
    let messages = console_messages(&rendered);
    assert!(messages.is_empty(), "console messages: {messages:?}");
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot ({} bytes)",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());

    // The chart's size as laid out: a probe copy of the page measures every SVG.
    let probe = dir.join("probe.html");
    let page = std::fs::read_to_string(&html).expect("the report");
    std::fs::write(
        &probe,
        page.replace(
            "</body>",
            "<script>document.body.setAttribute('data-svg', [...document.querySelectorAll('svg')]\
             .map(s => { const r = s.getBoundingClientRect(); return Math.round(r.width) + 'x' + Math.round(r.height); })\
             .join(' '));</script></body>",
        ),
    )
    .expect("probe page");
    let dom = browse(&probe, &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let sizes = dom
        .split("data-svg=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the probe ran");
    let (width, height) = sizes
        .split_whitespace()
        .filter_map(|s| s.split_once('x'))
        .filter_map(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .max()
        .unwrap_or_else(|| panic!("no SVG in the report: {sizes:?}"));
    assert!(
        width >= 600 && height >= 200,
        "the chart is laid out {width}x{height} in a 1280 px window"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
