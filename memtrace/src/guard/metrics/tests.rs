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
fn decisions_are_counted_by_action_and_outcome() {
    use crate::guard::engine::test_decision as decision;
    use crate::guard::engine::{Act, Outcome};
    let mut state = EngineState::default();
    state.decisions.count_all(&[
        decision(Act::Suspend, Outcome::Done),
        decision(Act::Suspend, Outcome::Done),
        decision(Act::Kill, Outcome::Failed),
        decision(Act::Level, Outcome::Reported),
    ]);
    let text = render(&state, &Snapshot::default(), 5);
    let family: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("memtrace_guard_decisions"))
        .collect();
    assert_eq!(
        family[..2],
        [
            "# TYPE memtrace_guard_decisions counter",
            "# HELP memtrace_guard_decisions decisions of the guard by action and outcome",
        ]
    );
    let series = &family[2..];
    assert_eq!(series.len(), 8 * 4, "every series, zeros included");
    assert!(
        series
            .iter()
            .all(|l| l.starts_with("memtrace_guard_decisions_total{action=\""))
    );
    for line in [
        "memtrace_guard_decisions_total{action=\"suspend\",outcome=\"done\"} 2",
        "memtrace_guard_decisions_total{action=\"kill\",outcome=\"failed\"} 1",
        "memtrace_guard_decisions_total{action=\"level\",outcome=\"reported\"} 1",
        "memtrace_guard_decisions_total{action=\"suspend\",outcome=\"dry_run\"} 0",
        "memtrace_guard_decisions_total{action=\"resume\",outcome=\"done\"} 0",
    ] {
        assert!(series.contains(&line), "{line} in {series:#?}");
    }
    let sum: u64 = series
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(sum, 4);
    // The family's samples come together, right after its TYPE and HELP lines.
    let first = text
        .lines()
        .position(|l| l == "# TYPE memtrace_guard_decisions counter")
        .expect("declared");
    assert!(
        text.lines()
            .skip(first + 2)
            .take(32)
            .all(|l| l.starts_with("memtrace_guard_decisions_total{"))
    );
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
    let not_allowed = String::from_utf8(response(Answer::MethodNotAllowed, text)).expect("UTF-8");
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
