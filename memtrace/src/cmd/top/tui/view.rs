//! Draws the interactive view from an [`App`] with ratatui widgets: the header (RAM, swap, PSI
//! with its sparkline, the guard, the source and its losses, OOM kills), the GPU pane when there
//! are GPUs, the pane of trees the guard holds when it holds any, the process table (the sort
//! column marked, a tree drawn with `├─`/`└─`, each row's RSS trend) and the footer with the keys
//! or the filter prompt. Drawing only fills ratatui's buffer; ratatui sends the terminal the
//! cells that changed since the last frame, so a slow link carries little per refresh.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style},
    text::Line,
    widgets::{Block, Borders, Cell, Paragraph, Row as TableRow, Table, TableState},
};

use super::{
    input::KEYS,
    state::{App, Column, Row, spark, trend},
};
use crate::{
    cmd::{
        status::swap_line,
        top::held::{GuardView, HeldTree},
    },
    collect::{
        model::{GpuDevice, Snapshot},
        source::SourceKind,
        system::percent,
    },
    guard::suspend::How,
    host::units::{human_bytes, mib, signed_mib},
};

/// Most GPU processes listed in the GPU pane.
const GPU_PROCESSES: usize = 4;
/// Most held trees listed (the pane says how many more).
const HELD_SHOWN: usize = 4;
/// Width of each row's RSS trend.
const TREND: usize = 8;

/// Draws the whole view.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let Some(snapshot) = &app.snapshot else {
        frame.render_widget(
            Paragraph::new("memtrace top: the first values come after one interval…"),
            frame.area(),
        );
        return;
    };
    let header = header(app, snapshot);
    let gpu = gpu_lines(snapshot);
    let held = held_lines(&app.guard, snapshot.time_unix_ms);
    let pane = |lines: &[Line<'_>]| {
        if lines.is_empty() {
            0
        } else {
            lines.len() as u16 + 1
        }
    };
    let [header_area, gpu_area, held_area, table_area, footer_area] = Layout::vertical([
        Constraint::Length(header.len() as u16),
        Constraint::Length(pane(&gpu)),
        Constraint::Length(pane(&held)),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header), header_area);
    if !gpu.is_empty() {
        frame.render_widget(
            Paragraph::new(gpu).block(Block::new().borders(Borders::TOP).title(" GPUs ")),
            gpu_area,
        );
    }
    if !held.is_empty() {
        frame.render_widget(
            Paragraph::new(held).block(
                Block::new()
                    .borders(Borders::TOP)
                    .title(" Held by the guard "),
            ),
            held_area,
        );
    }
    table(frame, app, table_area);
    frame.render_widget(Paragraph::new(footer(app)), footer_area);
}

fn header(app: &App, snapshot: &Snapshot) -> Vec<Line<'static>> {
    let s = &snapshot.system;
    let h = &snapshot.health;
    let mut lines: Vec<Line<'static>> = app.limit.iter().map(|l| Line::from(l.clone())).collect();
    lines.push(Line::from(format!(
        "RAM   {} used of {} ({:.1} %), {} available   {}",
        human_bytes(s.mem_used_bytes),
        human_bytes(s.mem_total_bytes),
        s.mem_used_percent,
        human_bytes(s.mem_available_bytes),
        swap_line(s).trim_end()
    )));
    let psi: Vec<f64> = app.psi.iter().copied().collect();
    lines.push(Line::from(match (s.psi_some_avg10, s.psi_full_avg10) {
        (Some(some), Some(full)) => format!(
            "PSI   memory some avg10 {some:.2} %, full avg10 {full:.2} %   some {}",
            spark(&psi, 24, 10.0)
        ),
        _ => "PSI   not available on this kernel".to_owned(),
    }));
    lines.push(Line::from(guard_line(&app.guard)));
    let live = snapshot.procs.iter().filter(|p| !p.exited).count();
    lines.push(Line::from(match app.source {
        SourceKind::Ebpf => format!(
            "Tracer: eBPF, {live} processes, kswapd wakeups {}, lost events: map full {}, ring buffer {}",
            h.kswapd_wakeups, h.map_full, h.ringbuf_drops
        ),
        SourceKind::Proc => format!(
            "Source: /proc (no eBPF), {live} processes; not seen: processes born and gone \
             between samples, reclaim stalls (STALL stays 0)"
        ),
    }));
    for kill in &snapshot.oom_kills {
        lines.push(
            Line::from(format!(
                "OOM KILL: pid {} ({}) with {} resident",
                kill.pid,
                kill.comm,
                human_bytes(kill.rss_bytes)
            ))
            .style(Style::new().add_modifier(Modifier::BOLD)),
        );
    }
    lines
}

/// The guard's line: which guards run, their level (from those that answered on their control
/// socket) and what they hold.
fn guard_line(guard: &GuardView) -> String {
    let pids: Vec<String> = guard.guards.iter().map(u32::to_string).collect();
    let running = if pids.is_empty() {
        "no guard running".to_owned()
    } else {
        format!("running (pid {})", pids.join(", "))
    };
    let level = if !guard.levels.is_empty() {
        let levels: Vec<String> = guard
            .levels
            .iter()
            .map(|g| {
                format!(
                    "level {} at {:.1} % of {}",
                    g.level, g.used_percent, g.scope
                )
            })
            .collect();
        levels.join("; ")
    } else if guard.held.is_empty() {
        "level unknown (no control socket answered)".to_owned()
    } else {
        "level suspend or above (it holds trees)".to_owned()
    };
    let mut line = format!(
        "Guard: {running}, {} tree(s) held, {level}",
        guard.held.len()
    );
    if let Some(problem) = &guard.problem {
        line.push_str(&format!("; {problem}"));
    }
    line
}

fn gpu_lines(snapshot: &Snapshot) -> Vec<Line<'static>> {
    let mut lines: Vec<Line<'static>> = snapshot.gpus.iter().map(gpu_device_line).collect();
    if lines.is_empty() {
        return lines;
    }
    let mut holders: Vec<_> = snapshot
        .procs
        .iter()
        .filter_map(|p| p.gpu_bytes.filter(|b| *b > 0).map(|b| (b, p)))
        .collect();
    holders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.pid.cmp(&b.1.pid)));
    for (bytes, p) in holders.iter().take(GPU_PROCESSES) {
        lines.push(Line::from(format!(
            "  {:>7} {:<16} {:>10}",
            p.pid,
            p.comm.chars().take(16).collect::<String>(),
            human_bytes(*bytes)
        )));
    }
    if holders.len() > GPU_PROCESSES {
        lines.push(Line::from(format!(
            "  … {} more processes hold GPU memory",
            holders.len() - GPU_PROCESSES
        )));
    }
    lines
}

fn gpu_device_line(d: &GpuDevice) -> Line<'static> {
    let used = percent(d.used_bytes, d.total_bytes);
    let filled = ((used / 100.0) * 20.0).round().clamp(0.0, 20.0) as usize;
    let bar = format!("{}{}", "█".repeat(filled), "░".repeat(20 - filled));
    let util = d
        .utilization_percent
        .map(|u| format!("  util {u} %"))
        .unwrap_or_default();
    Line::from(format!(
        "GPU{} {bar} {} used of {} ({used:.1} %){util}  {}",
        d.index,
        human_bytes(d.used_bytes),
        human_bytes(d.total_bytes),
        d.name
    ))
}

fn held_lines(guard: &GuardView, now_unix_ms: u64) -> Vec<Line<'static>> {
    let mut lines: Vec<Line<'static>> = guard
        .held
        .iter()
        .take(HELD_SHOWN)
        .map(|tree| Line::from(held_line(tree, now_unix_ms)))
        .collect();
    if guard.held.len() > HELD_SHOWN {
        lines.push(Line::from(format!(
            "… and {} more",
            guard.held.len() - HELD_SHOWN
        )));
    }
    lines
}

fn held_line(tree: &HeldTree, now_unix_ms: u64) -> String {
    let how = match tree.how {
        How::Stop => "stopped",
        How::Freeze | How::FreezerV1 => "frozen",
    };
    let since = tree.since_unix_ms.map_or_else(
        || "since ? (an older guard's file)".to_owned(),
        |since| {
            format!(
                "since {} UTC ({} ago)",
                clock_time(since),
                age(now_unix_ms.saturating_sub(since))
            )
        },
    );
    let why = tree.why.as_deref().unwrap_or("why not recorded");
    format!(
        "{} {} ({} proc) {how} {since}: {why}  [{}]",
        tree.root_pid, tree.root_comm, tree.members, tree.file
    )
}

/// `HH:MM:SS` of a Unix time in ms, UTC.
fn clock_time(unix_ms: u64) -> String {
    let day_s = (unix_ms / 1000) % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        day_s / 3600,
        (day_s / 60) % 60,
        day_s % 60
    )
}

/// A duration in ms as `45s`, `3m12s` or `2h05m`.
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s / 60) % 60),
    }
}

fn widths(gpu: bool) -> Vec<Constraint> {
    let mut widths = vec![
        Constraint::Length(7),
        Constraint::Min(16),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(11),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
    ];
    if gpu {
        widths.push(Constraint::Length(9));
    }
    widths.push(Constraint::Length(TREND as u16));
    widths
}

fn table(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let gpu = app.has_gpu();
    let mut titles: Vec<Cell<'static>> = Column::ALL
        .iter()
        .filter(|c| gpu || **c != Column::Gpu)
        .map(|&c| {
            if c == app.sort {
                let arrow = if app.descending { "▼" } else { "▲" };
                Cell::from(format!("{}{arrow}", c.title()))
                    .style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                Cell::from(c.title())
            }
        })
        .collect();
    titles.push(Cell::from("TREND"));
    // Only the rows that fit are formatted: the window that keeps the selection in view.
    let visible = usize::from(area.height.saturating_sub(1)).max(1);
    let offset = app.selected.saturating_sub(visible - 1);
    let rows: Vec<TableRow<'_>> = app
        .rows
        .iter()
        .skip(offset)
        .take(visible)
        .map(|r| table_row(r, gpu))
        .collect();
    let table = Table::new(rows, widths(gpu))
        .header(TableRow::new(titles).style(Style::new().add_modifier(Modifier::BOLD)))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(Some(app.selected.saturating_sub(offset)));
    frame.render_stateful_widget(table, area, &mut state);
}

fn table_row(r: &Row, gpu: bool) -> TableRow<'static> {
    let mut command = String::new();
    if r.depth > 0 {
        command.push_str(&"  ".repeat(r.depth - 1));
        command.push_str(if r.last { "└─" } else { "├─" });
    }
    command.push_str(&r.comm);
    if r.exited {
        command.push('✝');
    }
    let mut cells = vec![
        format!("{:>7}", r.pid),
        command,
        format!("{:>9}", mib(r.rss)),
        format!("{:>9}", mib(r.anon)),
        format!("{:>9}", mib(r.file)),
        format!("{:>8}", mib(r.shmem)),
        format!("{:>8}", mib(r.swap)),
        format!("{:>11}", signed_mib(r.growth)),
        format!("{:>9.0}", r.faults),
        format!("{:>9.1}", r.stall_ms),
        format!("{:>9}", mib(r.peak)),
    ];
    if gpu {
        cells.push(format!("{:>9}", r.gpu.map_or_else(|| "-".to_owned(), mib)));
    }
    cells.push(trend(&r.history, TREND));
    TableRow::new(cells)
}

fn footer(app: &App) -> Line<'static> {
    if let Some(text) = &app.editing {
        return Line::from(format!(
            "filter (regex on command and command line): /{text}▏  Enter apply  Esc cancel"
        ));
    }
    let mut parts = Vec::new();
    if let Some(error) = &app.filter_error {
        parts.push(format!("filter refused: {error}"));
    }
    if let Some(filter) = &app.filter {
        parts.push(format!("filter /{}/", filter.text));
    }
    if app.tree {
        parts.push("tree".to_owned());
    }
    parts.push(KEYS.to_owned());
    Line::from(parts.join("  │  ")).style(Style::new().add_modifier(Modifier::DIM))
}

#[cfg(test)]
mod tests;
