//! Sorting, filtering, the tree's grouping and sums, and the histories.
use super::*;
use crate::host::units::MIB;

fn proc(pid: u32, ppid: u32, comm: &str, rss_mib: u64, growth: f64) -> ProcSample {
    ProcSample {
        pid,
        ppid,
        comm: comm.into(),
        cmdline: format!("/usr/bin/{comm} --flag").into(),
        start_ticks: u64::from(pid),
        rss_bytes: rss_mib * MIB,
        anon_bytes: rss_mib * MIB,
        peak_rss_bytes: rss_mib * MIB,
        growth_bytes_per_s: growth,
        ..ProcSample::default()
    }
}

fn snapshot(procs: Vec<ProcSample>) -> Snapshot {
    Snapshot {
        procs,
        ..Snapshot::default()
    }
}

/// init(1) ─ shell(10) ─ pipeline(20) ┬ worker-a(21)
///                                     └ worker-b(22)
fn app() -> App {
    let mut app = App::new(SourceKind::Ebpf);
    app.update(
        snapshot(vec![
            proc(1, 0, "init", 10, 0.0),
            proc(10, 1, "shell", 5, 0.0),
            proc(20, 10, "pipeline", 100, 1.0),
            proc(21, 20, "worker-a", 300, 5.0),
            proc(22, 20, "worker-b", 200, -2.0),
        ]),
        GuardView::default(),
    );
    app
}

fn pids(app: &App) -> Vec<u32> {
    app.rows.iter().map(|r| r.pid).collect()
}

#[test]
fn starts_sorted_by_growth_and_sorts_by_any_column() {
    let mut app = app();
    assert_eq!(pids(&app), vec![21, 20, 1, 10, 22], "growth, largest first");
    app.apply(Action::SortBy(Column::Rss));
    assert_eq!(pids(&app), vec![21, 22, 20, 1, 10]);
    app.apply(Action::SortBy(Column::Rss));
    assert_eq!(pids(&app), vec![10, 1, 20, 22, 21], "again: reversed");
    app.apply(Action::SortBy(Column::Pid));
    assert_eq!(pids(&app), vec![1, 10, 20, 21, 22], "pids ascending first");
    app.apply(Action::Reverse);
    assert_eq!(pids(&app), vec![22, 21, 20, 10, 1]);
    app.apply(Action::SortBy(Column::Command));
    assert_eq!(pids(&app), vec![1, 20, 10, 21, 22]);
}

#[test]
fn sort_column_steps_wrap_and_skip_gpu_without_gpus() {
    let mut app = app();
    app.sort = Column::Peak;
    app.apply(Action::SortNext);
    assert_eq!(app.sort, Column::Pid, "no GPU column to step onto");
    app.apply(Action::SortPrev);
    assert_eq!(app.sort, Column::Peak);
    app.apply(Action::SortPrev);
    assert_eq!(app.sort, Column::Stall);
    assert!(app.descending);
    app.snapshot.as_mut().expect("snapshot").gpus = vec![Default::default()];
    app.sort = Column::Peak;
    app.apply(Action::SortNext);
    assert_eq!(app.sort, Column::Gpu);
}

#[test]
fn filter_hides_rows_and_bad_regexes_are_refused() {
    let mut app = app();
    app.apply(Action::StartFilter);
    for c in "worker-[ab]$".chars() {
        app.apply(Action::FilterChar(c));
    }
    assert_eq!(app.rows.len(), 5, "nothing hidden while typing");
    app.apply(Action::FilterApply);
    assert_eq!(pids(&app), vec![21, 22]);
    assert_eq!(app.editing, None);

    // The command line matches too.
    app.apply(Action::StartFilter);
    assert_eq!(
        app.editing.as_deref(),
        Some("worker-[ab]$"),
        "starts from the filter"
    );
    for _ in 0.."worker-[ab]$".len() {
        app.apply(Action::FilterBackspace);
    }
    for c in "bin/sh".chars() {
        app.apply(Action::FilterChar(c));
    }
    app.apply(Action::FilterApply);
    assert_eq!(pids(&app), vec![10]);

    app.apply(Action::StartFilter);
    app.apply(Action::FilterChar('('));
    app.apply(Action::FilterApply);
    assert_eq!(pids(&app), vec![10], "the old filter stays");
    let error = app.filter_error.clone().expect("an error");
    assert!(!error.is_empty() && !error.contains('\n'), "{error:?}");

    app.apply(Action::ClearFilter);
    assert_eq!(app.rows.len(), 5);
    assert_eq!(app.filter_error, None);
}

#[test]
fn tree_groups_children_under_parents_with_summed_columns() {
    let mut app = app();
    app.apply(Action::ToggleTree);
    let shape: Vec<(u32, usize)> = app.rows.iter().map(|r| (r.pid, r.depth)).collect();
    assert_eq!(
        shape,
        vec![(1, 0), (10, 1), (20, 2), (21, 3), (22, 3)],
        "children under parents, siblings by growth"
    );
    let pipeline = &app.rows[2];
    assert_eq!(pipeline.rss, 600 * MIB, "100 + 300 + 200");
    assert_eq!(pipeline.anon, 600 * MIB);
    assert_eq!(pipeline.peak, 100 * MIB, "its own peak");
    assert_eq!(pipeline.processes, 3);
    assert!((pipeline.growth - 4.0).abs() < 1e-9);
    assert_eq!(app.rows[0].rss, 615 * MIB);
    assert!(!app.rows[3].last && app.rows[4].last);

    // Filtered: the pipeline is the root of what is shown.
    app.filter = Some(Filter::new("pipeline|worker").expect("regex"));
    app.apply(Action::SortBy(Column::Rss));
    let shape: Vec<(u32, usize)> = app.rows.iter().map(|r| (r.pid, r.depth)).collect();
    assert_eq!(shape, vec![(20, 0), (21, 1), (22, 1)]);
    assert_eq!(app.rows[0].rss, 600 * MIB);
    app.apply(Action::ToggleTree);
    assert_eq!(pids(&app), vec![21, 22, 20], "flat again, by RSS");
}

#[test]
fn tree_survives_cycles_and_exited_children() {
    let mut procs = vec![proc(5, 6, "a", 1, 0.0), proc(6, 5, "b", 2, 0.0)];
    let mut gone = proc(7, 5, "gone", 4, 0.0);
    gone.exited = true;
    procs.push(gone);
    let mut app = App::new(SourceKind::Proc);
    app.tree = true;
    app.update(snapshot(procs), GuardView::default());
    let mut seen = pids(&app);
    seen.sort_unstable();
    assert_eq!(seen, vec![5, 6, 7], "every process once");
    let gone = app.rows.iter().find(|r| r.pid == 7).expect("row");
    assert_eq!(
        gone.depth, 0,
        "an exited process is not summed into its parent"
    );
}

#[test]
fn histories_follow_processes_and_drop_gone_ones() {
    let mut app = App::new(SourceKind::Ebpf);
    for step in 0..30u64 {
        let mut snap = snapshot(vec![proc(1, 0, "grows", 10 + step, 1.0)]);
        if step < 2 {
            snap.procs.push(proc(2, 0, "brief", 1, 0.0));
        }
        snap.system.psi_some_avg10 = Some(step as f64);
        app.update(snap, GuardView::default());
    }
    assert_eq!(app.rows.len(), 1);
    let history = &app.rows[0].history;
    assert_eq!(history.len(), HISTORY);
    assert_eq!(history.last().copied(), Some(39 * MIB));
    assert_eq!(
        app.history.len(),
        1,
        "the gone process's history is dropped"
    );
    assert_eq!(app.psi.len(), HISTORY);
    assert_eq!(app.psi.back().copied(), Some(29.0));
    assert_eq!(trend(history, 8), "▁▂▃▄▅▆▇█");
}

#[test]
fn sparklines_scale_and_cut_to_width() {
    assert_eq!(spark(&[], 8, 1.0), "");
    assert_eq!(spark(&[0.0, 50.0, 100.0], 8, 1.0), "▁▅█");
    assert_eq!(
        spark(&[0.0, 0.5], 8, 10.0),
        "▁▁",
        "below the floor stays low"
    );
    assert_eq!(
        spark(&[1.0, 2.0, 3.0, 4.0], 2, 0.0),
        "▆█",
        "the latest values"
    );
    assert_eq!(trend(&[5, 5, 5], 8), "▁▁▁", "flat");
}

#[test]
fn selection_stays_within_the_rows() {
    let mut app = app();
    app.apply(Action::End);
    assert_eq!(app.selected, 4);
    app.apply(Action::Down);
    assert_eq!(app.selected, 4);
    app.apply(Action::PageUp);
    assert_eq!(app.selected, 0);
    app.apply(Action::Down);
    app.filter = Some(Filter::new("init").expect("regex"));
    app.apply(Action::Home);
    app.apply(Action::Down);
    assert_eq!(app.selected, 0, "one row left");
}
