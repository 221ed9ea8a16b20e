//! The view drawn into ratatui's test backend: GPU pane with a fake GPU sample, the held
//! trees with why and since, the sort marker, the tree and the prompt.
use ratatui::{Terminal, backend::TestBackend};

use super::*;
use crate::{
    cmd::top::{held::GuardLevel, tui::input::Action},
    collect::{
        gpu::{GpuProcess, GpuSample, join},
        model::ProcSample,
    },
    host::units::MIB,
};

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal.draw(|frame| draw(frame, app)).expect("draw");
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

fn procs() -> Vec<ProcSample> {
    vec![
        ProcSample {
            pid: 42,
            ppid: 1,
            comm: "trainer".into(),
            rss_bytes: 512 * MIB,
            growth_bytes_per_s: 2.0 * MIB as f64,
            ..ProcSample::default()
        },
        ProcSample {
            pid: 43,
            ppid: 42,
            comm: "loader".into(),
            rss_bytes: 256 * MIB,
            ..ProcSample::default()
        },
    ]
}

fn app_with(snapshot: Snapshot, guard: GuardView) -> App {
    let mut app = App::new(SourceKind::Ebpf);
    app.update(snapshot, guard);
    app
}

#[test]
fn gpu_pane_shows_devices_and_processes_from_a_fake_sample() {
    let mut snapshot = Snapshot {
        procs: procs(),
        ..Snapshot::default()
    };
    join(
        &mut snapshot,
        &GpuSample {
            devices: vec![GpuDevice {
                index: 0,
                name: "Fake H100".to_owned(),
                used_bytes: 40 << 30,
                total_bytes: 80 << 30,
                utilization_percent: Some(7),
            }],
            processes: vec![GpuProcess {
                pid: 42,
                gpu_index: 0,
                used_bytes: 2 << 30,
            }],
        },
    );
    let text = screen(&app_with(snapshot, GuardView::default()), 160, 20);
    assert!(text.contains(" GPUs "), "{text}");
    assert!(
        text.contains(
            "GPU0 ██████████░░░░░░░░░░ 40.0 GiB used of 80.0 GiB (50.0 %)  util 7 %  Fake H100"
        ),
        "{text}"
    );
    assert!(
        text.contains("       42 trainer             2.0 GiB"),
        "{text}"
    );
    assert!(text.contains("GPU MiB"), "the table's GPU column: {text}");
    let trainer = text
        .lines()
        .find(|l| l.contains("trainer") && l.contains("512.0"))
        .expect("trainer's row");
    assert!(trainer.contains("2048.0"), "{trainer}");
}

#[test]
fn without_gpus_there_is_no_gpu_pane_or_column() {
    let snapshot = Snapshot {
        procs: procs(),
        ..Snapshot::default()
    };
    let text = screen(&app_with(snapshot, GuardView::default()), 160, 20);
    assert!(!text.contains("GPU"), "{text}");
    assert!(
        text.contains("Guard: no guard running, 0 tree(s) held"),
        "{text}"
    );
    assert!(text.contains("Tracer: eBPF, 2 processes"), "{text}");
    assert!(
        text.contains("GROW MiB/s▼"),
        "the sort column is marked: {text}"
    );
    assert!(text.contains("q quit  / filter"), "the keys: {text}");
}

#[test]
fn held_trees_say_why_and_since_when() {
    let snapshot = Snapshot {
        procs: procs(),
        time_unix_ms: 1_700_000_192_000,
        ..Snapshot::default()
    };
    let guard = GuardView {
        guards: vec![777],
        held: vec![
            HeldTree {
                file: "guard-suspended.json".to_owned(),
                how: How::Stop,
                root_pid: 42,
                root_comm: "trainer".to_owned(),
                members: 2,
                since_unix_ms: Some(1_700_000_000_000),
                why: Some("used 93.0 % ≥ 90 %".to_owned()),
            },
            HeldTree {
                file: "run-9-suspended.json".to_owned(),
                how: How::Freeze,
                root_pid: 50,
                root_comm: "etl".to_owned(),
                members: 1,
                since_unix_ms: None,
                why: None,
            },
        ],
        problem: None,
        levels: Vec::new(),
    };
    let text = screen(&app_with(snapshot.clone(), guard.clone()), 160, 20);
    assert!(text.contains(" Held by the guard "), "{text}");
    assert!(
        text.contains(
            "42 trainer (2 proc) stopped since 22:13:20 UTC (3m12s ago): used 93.0 % ≥ 90 %  [guard-suspended.json]"
        ),
        "{text}"
    );
    assert!(
        text.contains("50 etl (1 proc) frozen since ? (an older guard's file): why not recorded"),
        "{text}"
    );
    assert!(
        text.contains("Guard: running (pid 777), 2 tree(s) held, level suspend or above"),
        "{text}"
    );
    // A guard that answered on its control socket gives its own level.
    let answered = GuardView {
        levels: vec![GuardLevel {
            pid: 777,
            scope: "machine".to_owned(),
            level: "suspend".to_owned(),
            used_percent: 91.25,
        }],
        ..guard
    };
    let text = screen(&app_with(snapshot, answered), 200, 20);
    assert!(
        text.contains("2 tree(s) held, level suspend at 91.2 % of machine"),
        "{text}"
    );
}

#[test]
fn tree_prompt_and_waiting_screen() {
    let mut app = App::new(SourceKind::Proc);
    assert!(screen(&app, 80, 5).contains("first values come after one interval"));
    app.update(
        Snapshot {
            procs: procs(),
            ..Snapshot::default()
        },
        GuardView::default(),
    );
    app.apply(Action::ToggleTree);
    let text = screen(&app, 160, 20);
    let trainer = text
        .lines()
        .position(|l| l.contains("trainer"))
        .expect("trainer");
    let loader = text.lines().nth(trainer + 1).expect("next line");
    assert!(loader.contains("└─loader"), "{text}");
    assert!(
        text.lines()
            .nth(trainer)
            .is_some_and(|l| l.contains("768.0")),
        "512 + 256 summed: {text}"
    );
    assert!(text.contains("Source: /proc (no eBPF)"), "{text}");
    app.apply(Action::StartFilter);
    app.apply(Action::FilterChar('x'));
    assert!(screen(&app, 160, 20).contains("/x▏  Enter apply  Esc cancel"));
}

#[test]
fn only_the_rows_in_view_are_drawn_and_the_selection_stays_in_view() {
    let procs = (1..=100)
        .map(|pid| ProcSample {
            pid,
            comm: format!("proc-{pid:03}").into(),
            ..ProcSample::default()
        })
        .collect();
    let mut app = app_with(
        Snapshot {
            procs,
            ..Snapshot::default()
        },
        GuardView::default(),
    );
    app.apply(Action::SortBy(Column::Pid));
    let text = screen(&app, 160, 20);
    assert!(
        text.contains("proc-001") && !text.contains("proc-100"),
        "{text}"
    );
    app.apply(Action::End);
    let text = screen(&app, 160, 20);
    assert!(
        text.contains("proc-100") && !text.contains("proc-001"),
        "{text}"
    );
    let rows = text.lines().filter(|l| l.contains("proc-")).count();
    assert_eq!(rows, 20 - 6, "header 4, table header 1, footer 1: {text}");
}

#[test]
fn ages_and_clock_times() {
    assert_eq!(age(45_000), "45s");
    assert_eq!(age(192_000), "3m12s");
    assert_eq!(age(7_500_000), "2h05m");
    assert_eq!(clock_time(1_700_000_000_000), "22:13:20");
}

#[test]
fn the_container_limit_leads_the_header() {
    let snapshot = Snapshot {
        procs: procs(),
        ..Snapshot::default()
    };
    let mut app = app_with(snapshot, GuardView::default());
    let text = screen(&app, 160, 20);
    assert!(
        !text.contains("Limit:"),
        "no limit line on the machine: {text}"
    );
    app.limit = Some(
        "Limit: 300.0 MiB used of 640.0 MiB container limit (46.9 %), cgroup /sys/fs/cgroup/ctr (v2)"
            .to_owned(),
    );
    let text = screen(&app, 160, 20);
    let first = text
        .lines()
        .position(|l| l.contains("Limit: 300.0 MiB used of 640.0 MiB container limit"));
    let ram = text.lines().position(|l| l.contains("RAM "));
    assert!(
        first.is_some() && first < ram,
        "the limit comes before the host's RAM: {text}"
    );
}
