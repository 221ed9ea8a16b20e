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
mod tests {
    //! The rendering is valid OpenMetrics-shaped text; the server answers `GET /metrics` only
    //! (404, 405, 400 otherwise), promptly while idle connections hang, and warns about
    //! addresses other hosts can reach.
    use std::sync::{Once, PoisonError};

    use super::*;
    use crate::collect::model::ProcSample;

    fn rendering() -> String {
        let snapshot = Snapshot {
            procs: vec![ProcSample {
                pid: 7,
                comm: "a\"b".to_owned().into(),
                rss_bytes: 10,
                ..ProcSample::default()
            }],
            ..Snapshot::default()
        };
        render(&EngineState::default(), &snapshot, 5)
    }

    fn server() -> (SocketAddr, String) {
        let text = rendering();
        let shared: Shared = Arc::new(Mutex::new(text.clone()));
        let addr = serve("127.0.0.1:0".parse().expect("addr"), shared).expect("bind");
        (addr, text)
    }

    /// Sends `request` on a fresh connection and reads the whole reply.
    fn ask(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.write_all(request).expect("send");
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => reply.extend_from_slice(&chunk[..n]),
                // A reset after the reply (the server closed with our request unread) is fine.
                Err(err) => {
                    assert!(!reply.is_empty(), "no reply: {err}");
                    break;
                }
            }
        }
        String::from_utf8(reply).expect("UTF-8 reply")
    }

    #[test]
    fn renders() {
        let text = rendering();
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("memtrace_guard_level 0"));
        assert!(text.contains("memtrace_process_rss_bytes{pid=\"7\",comm=\"a\\\"b\"} 10"));
        assert!(text.contains("memtrace_guard_actions_total{action=\"suspend\"} 0"));
    }

    #[test]
    fn requests_get_their_status() {
        for (request, expected) in [
            (
                &b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"[..],
                Answer::Metrics,
            ),
            (b"GET /metrics HTTP/1.0\n\n", Answer::Metrics),
            (b"GET /metrics?name[]=x HTTP/1.1\r\n\r\n", Answer::Metrics),
            (
                b"GET http://h:9100/metrics HTTP/1.1\r\n\r\n",
                Answer::Metrics,
            ),
            (b"HEAD /metrics HTTP/1.1\r\n\r\n", Answer::MetricsHead),
            (b"GET / HTTP/1.1\r\n\r\n", Answer::NotFound),
            (b"GET /metricsx HTTP/1.1\r\n\r\n", Answer::NotFound),
            (b"GET /metrics/ HTTP/1.1\r\n\r\n", Answer::NotFound),
            (b"GET /../metrics HTTP/1.1\r\n\r\n", Answer::NotFound),
            (b"POST /other HTTP/1.1\r\n\r\n", Answer::NotFound),
            (b"POST /metrics HTTP/1.1\r\n\r\n", Answer::MethodNotAllowed),
            (
                b"DELETE /metrics HTTP/1.1\r\n\r\n",
                Answer::MethodNotAllowed,
            ),
            (b"get /metrics HTTP/1.1\r\n\r\n", Answer::MethodNotAllowed),
            (b"", Answer::BadRequest),
            (b"\r\n\r\n", Answer::BadRequest),
            (b"GET /metrics\r\n\r\n", Answer::BadRequest),
            (b"GET /metrics HTTP/2.0\r\n\r\n", Answer::BadRequest),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", Answer::BadRequest),
            (b"GET metrics HTTP/1.1\r\n\r\n", Answer::BadRequest),
            (b"G(T /metrics HTTP/1.1\r\n\r\n", Answer::BadRequest),
            (b"GET /met\x01rics HTTP/1.1\r\n\r\n", Answer::BadRequest),
            (
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                Answer::BadRequest,
            ),
        ] {
            assert_eq!(
                answer(request),
                expected,
                "{:?}",
                String::from_utf8_lossy(request)
            );
        }
    }

    #[test]
    fn responses_carry_status_headers_and_body() {
        let text = "m 1\n# EOF\n";
        let ok = String::from_utf8(response(Answer::Metrics, text)).expect("UTF-8");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(&format!("Content-Length: {}\r\n", text.len())));
        assert!(ok.ends_with(&format!("\r\n\r\n{text}")), "{ok}");
        let head = String::from_utf8(response(Answer::MetricsHead, text)).expect("UTF-8");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}\r\n", text.len())));
        assert!(head.ends_with("\r\n\r\n"), "no body: {head}");
        let not_allowed =
            String::from_utf8(response(Answer::MethodNotAllowed, text)).expect("UTF-8");
        assert!(not_allowed.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(not_allowed.contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(!not_allowed.contains(text), "no metrics with a 405");
        for (answer, status) in [
            (Answer::NotFound, "404 Not Found"),
            (Answer::BadRequest, "400 Bad Request"),
            (Answer::Busy, "503 Service Unavailable"),
        ] {
            let reply = String::from_utf8(response(answer, text)).expect("UTF-8");
            assert!(
                reply.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{reply}"
            );
            assert!(!reply.contains(text), "no metrics with a {status}");
        }
    }

    #[test]
    fn serves_metrics_at_their_path_only() {
        let (addr, text) = server();
        let ok = ask(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with(&text));
        let head = ask(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
        let missing = ask(addr, b"GET /favicon.ico HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        assert!(!missing.contains("memtrace_"), "{missing}");
        let post = ask(
            addr,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
        let garbage = ask(addr, b"\x16\x03\x01 hello\n\n");
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    }

    #[test]
    fn idle_connections_do_not_delay_a_scrape() {
        let (addr, text) = server();
        let idle: Vec<TcpStream> = (0..15)
            .map(|_| TcpStream::connect(addr).expect("idle connection"))
            .collect();
        // Half a request on a few of them, nothing on the rest.
        for stream in idle.iter().take(5) {
            let mut stream = stream;
            stream.write_all(b"GET /metr").expect("send");
        }
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let reply = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        let took = started.elapsed();
        assert!(reply.ends_with(&text), "{reply}");
        assert!(
            took < Duration::from_secs(1),
            "the scrape took {took:?} behind 15 idle connections"
        );
        // Past the cap, a connection is told so at once instead of waiting (once the scrape's
        // own connection is done, the 16th of these takes the last place).
        std::thread::sleep(Duration::from_millis(300));
        let more: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(addr).expect("idle connection"))
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        let busy = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(busy.starts_with("HTTP/1.1 503 "), "{busy}");
        assert!(started.elapsed() < Duration::from_secs(1));
        // Idle clients are let go after the deadline, and scrapes are served again.
        drop(more);
        std::thread::sleep(DEADLINE + Duration::from_millis(500));
        let again = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(again.ends_with(&text), "{again}");
        drop(idle);
    }

    /// The warnings logged in this test process.
    static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Capture;

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            if record.level() == log::Level::Warn {
                LOGGED
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(record.args().to_string());
            }
        }
        fn flush(&self) {}
    }

    fn warnings_about(addr: SocketAddr) -> Vec<String> {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            static CAPTURE: Capture = Capture;
            log::set_logger(&CAPTURE).expect("no other logger in the unit tests");
            log::set_max_level(log::LevelFilter::Warn);
        });
        LOGGED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|w| w.contains(&addr.to_string()))
            .cloned()
            .collect()
    }

    #[test]
    fn warns_when_other_hosts_can_reach_it() {
        for quiet in [
            "127.0.0.1:9",
            "[::1]:9",
            "[::ffff:127.0.0.1]:9",
            "127.3.2.1:9",
        ] {
            let addr: SocketAddr = quiet.parse().expect("addr");
            assert_eq!(exposure_warning(addr), None, "{quiet}");
        }
        for loud in ["0.0.0.0:9", "[::]:9", "192.168.1.2:9", "10.0.0.1:9"] {
            let addr: SocketAddr = loud.parse().expect("addr");
            assert!(exposure_warning(addr).is_some(), "{loud}");
        }
        let _ = warnings_about("127.0.0.1:1".parse().expect("addr"));
        let shared: Shared = Arc::new(Mutex::new(rendering()));
        let local = serve("127.0.0.1:0".parse().expect("addr"), Arc::clone(&shared)).expect("bind");
        assert!(
            warnings_about(local).is_empty(),
            "loopback is served quietly"
        );
        let wide = serve("0.0.0.0:0".parse().expect("addr"), shared).expect("bind");
        let warned = warnings_about(wide);
        assert_eq!(warned.len(), 1, "one warning at start: {warned:?}");
        assert!(
            warned[0].contains("not on a loopback address"),
            "{warned:?}"
        );
    }
}
