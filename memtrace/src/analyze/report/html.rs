//! The HTML report: one self-contained offline file (inline CSS and SVG, no scripts, no
//! network): memory over time with a coloured band per stage run, the host line (anon + shmem +
//! swap of the tree), RSS, the GPU line where known, and red markers for guard actions and OOM
//! kills; then the verdicts and the stage × clip table.
use super::{Report, text};
use crate::host::units;

const W: f64 = 1100.0;
const H: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A stable colour per stage name.
fn colour(stage: &str) -> String {
    let hash = stage.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    format!("hsl({}, 70%, 55%)", hash % 360)
}

fn chart(report: &Report) -> String {
    let points = &report.series;
    let t_max = points
        .last()
        .map_or(1.0, |p| p.t_ms as f64 / 1000.0)
        .max(1.0);
    let y_max = points
        .iter()
        .map(|p| p.rss.max(p.host).max(p.gpu.unwrap_or(0)))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let x = |t: f64| LEFT + t / t_max * (W - LEFT - RIGHT);
    let y = |b: f64| H - BOTTOM - b / y_max * (H - TOP - BOTTOM);
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {W} {H}' width='100%'>\
         <rect x='{LEFT}' y='{TOP}' width='{}' height='{}' fill='#fafafa' stroke='#ccc'/>",
        W - LEFT - RIGHT,
        H - TOP - BOTTOM
    );
    for run in &report.stages {
        let (x0, x1) = (x(run.begin_s), x(run.end_s).max(x(run.begin_s) + 1.0));
        let label = match &run.clip {
            Some(clip) => format!("{} #{clip}", run.stage),
            None => run.stage.clone(),
        };
        svg.push_str(&format!(
            "<rect x='{x0:.1}' y='{TOP}' width='{:.1}' height='{:.1}' fill='{}' opacity='0.18'>\
             <title>{} ({:.1}–{:.1} s): retained {} MiB, peak {} MiB</title></rect>",
            x1 - x0,
            H - TOP - BOTTOM,
            colour(&run.stage),
            escape(&label),
            run.begin_s,
            run.end_s,
            text::mib(run.host_retained),
            units::mib(run.host_peak)
        ));
        if x1 - x0 > 40.0 {
            svg.push_str(&format!(
                "<text x='{:.1}' y='{}' font-size='10' fill='#555'>{}</text>",
                x0 + 2.0,
                TOP + 12.0,
                escape(&label)
            ));
        }
    }
    let line = |pick: &dyn Fn(&super::TreePoint) -> Option<u64>, colour: &str, width: f64| {
        let coords: Vec<String> = points
            .iter()
            .filter_map(|p| {
                pick(p).map(|v| format!("{:.1},{:.1}", x(p.t_ms as f64 / 1000.0), y(v as f64)))
            })
            .collect();
        format!(
            "<polyline fill='none' stroke='{colour}' stroke-width='{width}' points='{}'/>",
            coords.join(" ")
        )
    };
    svg.push_str(&line(&|p| Some(p.rss), "#999", 1.0));
    svg.push_str(&line(&|p| Some(p.host), "#1f5fbf", 2.0));
    svg.push_str(&line(&|p| p.gpu, "#2a9d3a", 2.0));
    for (moments, colour) in [(&report.guard, "#d62828"), (&report.oom_kills, "#000")] {
        for m in moments {
            let mx = x(m.t_s);
            svg.push_str(&format!(
                "<line x1='{mx:.1}' x2='{mx:.1}' y1='{TOP}' y2='{}' stroke='{colour}' stroke-dasharray='4 2'>\
                 <title>{:.1} s: {}</title></line>",
                H - BOTTOM,
                m.t_s,
                escape(&m.text)
            ));
        }
    }
    for i in 0..=4 {
        let v = y_max / 4.0 * f64::from(i);
        svg.push_str(&format!(
            "<text x='{}' y='{:.1}' font-size='11' text-anchor='end'>{} MiB</text>",
            LEFT - 4.0,
            y(v) + 4.0,
            text::mib(v as i64)
        ));
        let t = t_max / 4.0 * f64::from(i);
        svg.push_str(&format!(
            "<text x='{:.1}' y='{}' font-size='11' text-anchor='middle'>{t:.0} s</text>",
            x(t),
            H - BOTTOM + 16.0
        ));
    }
    svg.push_str(&format!(
        "<text x='{LEFT}' y='18' font-size='12'><tspan fill='#1f5fbf'>■ host (anon+shmem+swap)</tspan> \
         <tspan fill='#999'>■ RSS</tspan> <tspan fill='#2a9d3a'>■ GPU</tspan> \
         <tspan fill='#d62828'>┆ guard action</tspan> <tspan>┆ OOM kill</tspan> · bands: stage runs</text></svg>"
    ));
    svg
}

/// The whole page.
pub fn render(report: &Report) -> String {
    let h = &report.header;
    let mut rows = String::new();
    for r in &report.stages {
        rows.push_str(&format!(
            "<tr><td><span style='color:{}'>■</span> {}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            colour(&r.stage),
            escape(&r.stage),
            escape(r.clip.as_deref().unwrap_or("-")),
            r.end_s - r.begin_s,
            units::mib(r.host_start),
            units::mib(r.host_end),
            units::mib(r.host_peak),
            text::mib(r.host_retained),
            r.gpu.map_or("-".to_owned(), |g| format!("{} / {}", text::mib(g[2]), text::mib(g[3])))
        ));
    }
    let tree = report
        .tree
        .as_ref()
        .map(|t| format!("<li>{}</li>", escape(&t.text)))
        .unwrap_or_default();
    let verdicts: String = report
        .verdicts
        .iter()
        .map(|v| {
            let class = if v.verdict == super::judge::LeakVerdict::LikelyLeak {
                "leak"
            } else {
                ""
            };
            format!("<li class='{class}'>{}</li>", escape(&v.text))
        })
        .collect();
    let plain = text::render(report, "trace");
    format!(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>memtrace report</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse}}td,th{{padding:2px 10px;border-bottom:1px solid #eee;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}.leak{{color:#d62828;font-weight:bold}}\
         pre{{background:#f5f5f5;padding:1em;overflow:auto}}</style></head><body>\
         <h1>memtrace report</h1><p>{} · Linux {} · started {} · {:.1} s · {}</p>\
         {}<h2>Verdicts</h2><ul>{tree}{verdicts}</ul>\
         <h2>Stages × clips (MiB)</h2><table><tr><th>stage</th><th>clip</th><th>seconds</th><th>start</th>\
         <th>end</th><th>peak</th><th>retained</th><th>GPU peak / retained</th></tr>{rows}</table>\
         <h2>Full text report</h2><pre>{}</pre></body></html>\n",
        escape(&h.host),
        escape(&h.kernel),
        text::utc(h.start_unix_ms),
        report.duration_s,
        escape(&h.command.join(" ")),
        chart(report),
        escape(&plain)
    )
}
