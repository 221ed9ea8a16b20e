//! The OpenMetrics (Prometheus) endpoint of `memtrace guard --metrics ADDR`: a tiny HTTP server
//! serving the text the guard loop renders after every round at `GET /metrics` (and `HEAD`):
//! 404 for other paths, 405 for other methods, 400 for anything that is not an HTTP/1 request.
//! Each connection gets its own thread (at most [`MAX_CONNECTIONS`] at once, the rest are
//! answered 503) and [`DEADLINE`] to send its request, so idle clients cannot hold up a scrape.
//! An address other than loopback is served with a warning: the endpoint has no authentication.
use std::{
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    collect::model::Snapshot,
    guard::engine::{DecisionCounts, EngineState},
};

/// Where the latest rendering lives.
pub type Shared = Arc<Mutex<String>>;

/// Escapes a label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The counter of decisions by action and outcome (`memtrace_guard_decisions_total{action,
/// outcome}`): every series, zeros included (8 actions × 4 outcomes), so the first decision of a
/// kind is an increase that `rate()` and `increase()` see rather than a new series.
fn decisions(out: &mut String, counts: &DecisionCounts) {
    let _ = writeln!(
        out,
        "# TYPE memtrace_guard_decisions counter\n# HELP memtrace_guard_decisions decisions of \
         the guard by action and outcome"
    );
    for (action, outcome, n) in counts.iter() {
        let _ = writeln!(
            out,
            "memtrace_guard_decisions_total{{action=\"{action}\",outcome=\"{outcome}\"}} {n}"
        );
    }
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
    decisions(&mut out, &state.decisions);
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

/// Connections served at once; one more is answered 503 at once and closed.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client has to send its request head, and to take the reply.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// The most of a request head (request line and headers) that is read.
const MAX_HEAD: usize = 8 * 1024;
/// The one path served.
pub const PATH: &str = "/metrics";

/// What a request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200 with the metrics: `GET /metrics`.
    Metrics,
    /// 200 with the headers only: `HEAD /metrics`.
    MetricsHead,
    /// 404: another path.
    NotFound,
    /// 405 (with `Allow: GET, HEAD`): another method on `/metrics`.
    MethodNotAllowed,
    /// 400: not an HTTP/1 request line.
    BadRequest,
    /// 503: [`MAX_CONNECTIONS`] are already being served.
    Busy,
}

/// What a request head (at least its request line) asks for.
pub fn answer(head: &[u8]) -> Answer {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Answer::BadRequest;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Answer::BadRequest;
    };
    let is_token = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    // The origin form (`/metrics?x`) or the absolute form (`http://host:port/metrics`).
    let origin = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => target,
    };
    if !is_token
        || !origin.starts_with('/')
        || origin.bytes().any(|b| b.is_ascii_control())
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
    {
        return Answer::BadRequest;
    }
    let path = origin.split('?').next().unwrap_or(origin);
    if path != PATH {
        return Answer::NotFound;
    }
    match method {
        "GET" => Answer::Metrics,
        "HEAD" => Answer::MetricsHead,
        _ => Answer::MethodNotAllowed,
    }
}

/// The bytes sent for `answer`; `metrics` is the latest rendering.
pub fn response(answer: Answer, metrics: &str) -> Vec<u8> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let (status, extra, content_type, body) = match answer {
        Answer::Metrics | Answer::MetricsHead => (
            "200 OK",
            "",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics,
        ),
        Answer::NotFound => (
            "404 Not Found",
            "",
            TEXT,
            "not found: the metrics are at /metrics\n",
        ),
        Answer::MethodNotAllowed => (
            "405 Method Not Allowed",
            "Allow: GET, HEAD\r\n",
            TEXT,
            "method not allowed: use GET or HEAD\n",
        ),
        Answer::BadRequest => ("400 Bad Request", "", TEXT, "bad request\n"),
        Answer::Busy => (
            "503 Service Unavailable",
            "Retry-After: 1\r\n",
            TEXT,
            "too many connections\n",
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if answer != Answer::MetricsHead {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The warning for serving at `addr` when other hosts can reach it (the endpoint has no
/// authentication and names processes).
pub fn exposure_warning(addr: SocketAddr) -> Option<String> {
    (!addr.ip().to_canonical().is_loopback()).then(|| {
        format!(
            "metrics at {addr} are not on a loopback address: anyone who can reach this host \
             can read them (process names, pids, memory); use 127.0.0.1 unless that is intended"
        )
    })
}

/// Reads a request head until its blank line, [`MAX_HEAD`] bytes, the peer's end or
/// [`DEADLINE`], whichever comes first; `None` when nothing came.
fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let deadline = Instant::now() + DEADLINE;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while let Some(left) = deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
    {
        if stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                head.extend_from_slice(&chunk[..n]);
                if head.len() >= MAX_HEAD
                    || head.windows(4).any(|w| w == b"\r\n\r\n")
                    || head.windows(2).any(|w| w == b"\n\n")
                {
                    break;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (!head.is_empty()).then_some(head)
}

/// Answers one connection.
fn serve_one(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_write_timeout(Some(DEADLINE));
    let Some(head) = read_head(&mut stream) else {
        return;
    };
    let answer = answer(&head);
    let metrics = match answer {
        Answer::Metrics | Answer::MetricsHead => shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
        _ => String::new(),
    };
    if stream.write_all(&response(answer, &metrics)).is_err() {
        return;
    }
    // Closing with unread request bytes would reset the connection and could cost the client
    // the reply: end our side, then take what is left for a moment.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut rest = [0u8; 4096];
    for _ in 0..16 {
        if !matches!(stream.read(&mut rest), Ok(n) if n > 0) {
            break;
        }
    }
}

/// One of the [`MAX_CONNECTIONS`] places, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A place, unless all are taken.
    fn take(active: &Arc<AtomicUsize>) -> Option<Self> {
        let before = active.fetch_add(1, Ordering::SeqCst);
        let slot = Self(Arc::clone(active));
        (before < MAX_CONNECTIONS).then_some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `shared` at `addr` from a background thread (a thread per connection), warning when
/// `addr` is not a loopback address; returns the bound address.
pub fn serve(addr: SocketAddr, shared: Shared) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    if let Some(warning) = exposure_warning(bound) {
        log::warn!("{warning}");
    }
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("metrics".to_owned())
        .spawn(move || {
            for stream in listener.incoming() {
                let mut stream = match stream {
                    Ok(stream) => stream,
                    Err(_) => {
                        // Out of file descriptors, say: do not spin.
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let Some(slot) = Slot::take(&active) else {
                    // Told at once, without waiting for its request (a fresh connection's send
                    // buffer takes the reply without blocking).
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
                    let _ = stream.write_all(&response(Answer::Busy, ""));
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                    if stream.set_nonblocking(true).is_ok() {
                        let mut rest = [0u8; 4096];
                        while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
                    }
                    continue;
                };
                let shared = Arc::clone(&shared);
                // A failed spawn drops the closure, the slot with it.
                let _ = std::thread::Builder::new()
                    .name("metrics-conn".to_owned())
                    .spawn(move || {
                        let _slot = slot;
                        serve_one(stream, &shared);
                    });
            }
        })?;
    Ok(bound)
}

#[cfg(test)]
mod tests;
