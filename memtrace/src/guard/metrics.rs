//! The OpenMetrics (Prometheus) endpoint of `memtrace guard --metrics ADDR`: a tiny HTTP server
//! on its own thread serving the text the guard loop renders after every round.
use std::{
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{collect::model::Snapshot, guard::engine::EngineState};

/// Where the latest rendering lives.
pub type Shared = Arc<Mutex<String>>;

/// Escapes a label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the guard's state and the snapshot as OpenMetrics text.
pub fn render(state: &EngineState, snapshot: &Snapshot, top: usize) -> String {
    let mut out = String::with_capacity(4096);
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# TYPE {name} gauge\n# HELP {name} {help}\n{name} {value}"
        );
    };
    gauge(
        "memtrace_guard_level",
        "0 ok, 1 warn, 2 reclaim, 3 suspend, 4 kill",
        f64::from(state.level.as_number()),
    );
    gauge(
        "memtrace_scope_used_bytes",
        "memory in use in the guarded scope",
        state.used_bytes as f64,
    );
    gauge(
        "memtrace_scope_limit_bytes",
        "limit of the guarded scope",
        state.limit_bytes as f64,
    );
    gauge(
        "memtrace_scope_growth_bytes_per_second",
        "growth of the scope's usage",
        state.growth_bytes_per_s,
    );
    gauge(
        "memtrace_guard_suspended_trees",
        "process trees held suspended",
        state.suspended as f64,
    );
    let s = &snapshot.system;
    gauge(
        "memtrace_memory_available_bytes",
        "MemAvailable",
        s.mem_available_bytes as f64,
    );
    gauge(
        "memtrace_memory_total_bytes",
        "MemTotal",
        s.mem_total_bytes as f64,
    );
    gauge(
        "memtrace_swap_free_bytes",
        "SwapFree",
        s.swap_free_bytes as f64,
    );
    if let Some(v) = s.psi_some_avg10 {
        gauge(
            "memtrace_psi_memory_some_avg10",
            "PSI memory some avg10, percent",
            v,
        );
    }
    if let Some(v) = s.psi_full_avg10 {
        gauge(
            "memtrace_psi_memory_full_avg10",
            "PSI memory full avg10, percent",
            v,
        );
    }
    let c = &state.counts;
    let _ = writeln!(
        out,
        "# TYPE memtrace_guard_actions counter\n# HELP memtrace_guard_actions actions taken by the guard"
    );
    for (action, n) in [
        ("reclaim", c.reclaim),
        ("suspend", c.suspend),
        ("resume", c.resume),
        ("kill", c.kill),
    ] {
        let _ = writeln!(
            out,
            "memtrace_guard_actions_total{{action=\"{action}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# TYPE memtrace_process_rss_bytes gauge\n# HELP memtrace_process_rss_bytes resident set of the top processes by growth"
    );
    let live: Vec<_> = snapshot
        .procs
        .iter()
        .filter(|p| !p.exited)
        .take(top)
        .collect();
    for p in &live {
        let _ = writeln!(
            out,
            "memtrace_process_rss_bytes{{pid=\"{}\",comm=\"{}\"}} {}",
            p.pid,
            label(&p.comm),
            p.rss_bytes
        );
    }
    let _ = writeln!(
        out,
        "# TYPE memtrace_process_growth_bytes_per_second gauge\n# HELP memtrace_process_growth_bytes_per_second growth of the top processes"
    );
    for p in &live {
        let _ = writeln!(
            out,
            "memtrace_process_growth_bytes_per_second{{pid=\"{}\",comm=\"{}\"}} {}",
            p.pid,
            label(&p.comm),
            p.growth_bytes_per_s
        );
    }
    if live.iter().any(|p| p.gpu_bytes.is_some()) {
        let _ = writeln!(
            out,
            "# TYPE memtrace_process_gpu_bytes gauge\n# HELP memtrace_process_gpu_bytes GPU memory of the top processes"
        );
        for p in live.iter().filter(|p| p.gpu_bytes.is_some()) {
            let _ = writeln!(
                out,
                "memtrace_process_gpu_bytes{{pid=\"{}\",comm=\"{}\"}} {}",
                p.pid,
                label(&p.comm),
                p.gpu_bytes.unwrap_or(0)
            );
        }
    }
    if !snapshot.gpus.is_empty() {
        let _ = writeln!(
            out,
            "# TYPE memtrace_gpu_used_bytes gauge\n# HELP memtrace_gpu_used_bytes GPU memory in use"
        );
        for g in &snapshot.gpus {
            let _ = writeln!(
                out,
                "memtrace_gpu_used_bytes{{gpu=\"{}\",name=\"{}\"}} {}",
                g.index,
                label(&g.name),
                g.used_bytes
            );
        }
        let _ = writeln!(
            out,
            "# TYPE memtrace_gpu_total_bytes gauge\n# HELP memtrace_gpu_total_bytes GPU memory"
        );
        for g in &snapshot.gpus {
            let _ = writeln!(
                out,
                "memtrace_gpu_total_bytes{{gpu=\"{}\",name=\"{}\"}} {}",
                g.index,
                label(&g.name),
                g.total_bytes
            );
        }
    }
    let h = &snapshot.health;
    let _ = writeln!(
        out,
        "# TYPE memtrace_tracer_lost_events counter\n# HELP memtrace_tracer_lost_events events the tracer could not record"
    );
    let _ = writeln!(
        out,
        "memtrace_tracer_lost_events_total{{cause=\"map_full\"}} {}",
        h.map_full
    );
    let _ = writeln!(
        out,
        "memtrace_tracer_lost_events_total{{cause=\"ringbuf\"}} {}",
        h.ringbuf_drops
    );
    out.push_str("# EOF\n");
    out
}

/// Serves `shared` at `addr` (any path) from a background thread.
pub fn serve(addr: SocketAddr, shared: Shared) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".to_owned())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request);
                let body = shared.lock().map(|text| text.clone()).unwrap_or_default();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body.as_bytes());
            }
        })?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    //! The rendering is valid OpenMetrics-shaped text and the server answers.
    use super::*;
    use crate::collect::model::ProcSample;

    #[test]
    fn renders_and_serves() {
        let snapshot = Snapshot {
            procs: vec![ProcSample {
                pid: 7,
                comm: "a\"b".to_owned(),
                rss_bytes: 10,
                ..ProcSample::default()
            }],
            ..Snapshot::default()
        };
        let state = EngineState::default();
        let text = render(&state, &snapshot, 5);
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("memtrace_guard_level 0"));
        assert!(text.contains("memtrace_process_rss_bytes{pid=\"7\",comm=\"a\\\"b\"} 10"));
        assert!(text.contains("memtrace_guard_actions_total{action=\"suspend\"} 0"));

        let shared: Shared = Arc::new(Mutex::new(text.clone()));
        let addr = serve("127.0.0.1:0".parse().expect("addr"), shared).expect("bind");
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read");
        assert!(reply.starts_with("HTTP/1.1 200 OK"));
        assert!(reply.ends_with(&text));
    }
}
