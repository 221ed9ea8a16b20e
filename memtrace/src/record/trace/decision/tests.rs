//! Names are stable (they are in traces, hook environments and metric labels); a guard event
//! goes through the trace file typed and comes back equal, and one written before the action
//! was typed (its name as free text, no outcome) still reads, as the same action.
use super::*;
use crate::record::trace::{
    Event, Header, MAGIC, TraceWriter, VERSION, codec::put_varint, frame, read_bytes,
};

#[test]
fn names_are_stable_and_only_tree_actions_are_told() {
    let names: Vec<&str> = Act::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "level", "warn", "reclaim", "suspend", "resume", "wait", "keep", "kill"
        ]
    );
    for act in Act::ALL {
        let json = serde_json::to_string(&act).expect("json");
        assert_eq!(json, format!("\"{act}\""));
        assert_eq!(serde_json::from_str::<Act>(&json).expect("back"), act);
    }
    let told: Vec<Act> = Act::ALL.into_iter().filter(|a| a.tells()).collect();
    assert_eq!(told, [Act::Suspend, Act::Resume, Act::Keep, Act::Kill]);
    assert!(Act::Wait.reports() && !Act::Wait.tells());
}

#[test]
fn outcome_names_round_trip_and_unknown_names_are_refused() {
    let names: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
    assert_eq!(names, ["reported", "done", "dry_run", "failed"]);
    for outcome in Outcome::ALL {
        let json = serde_json::to_string(&outcome).expect("json");
        assert_eq!(json, format!("\"{outcome}\""));
        assert_eq!(
            serde_json::from_str::<Outcome>(&json).expect("back"),
            outcome
        );
    }
    assert!(serde_json::from_str::<Act>("\"notify\"").is_err());
    assert!(serde_json::from_str::<Outcome>("\"maybe\"").is_err());
}

#[test]
fn labels_add_the_outcome_where_it_says_something() {
    assert_eq!(label(Act::Suspend, "suspend", None), "suspend (suspend)");
    assert_eq!(
        label(Act::Suspend, "suspend", Some(Outcome::Done)),
        "suspend (suspend, done)"
    );
    assert_eq!(
        label(Act::Kill, "kill", Some(Outcome::DryRun)),
        "kill (kill, dry run)"
    );
    assert_eq!(
        label(Act::Suspend, "suspend", Some(Outcome::Failed)),
        "suspend (suspend, failed)"
    );
    assert_eq!(label(Act::Wait, "ok", Some(Outcome::Reported)), "wait (ok)");
}

/// The JSON text of each event record of `data`, in order.
fn event_texts(data: &[u8]) -> Vec<String> {
    let mut rest = &data[MAGIC.len() + 2..];
    let mut texts = Vec::new();
    while let Some(record) = frame::decode(rest, 0).expect("framed") {
        if record.kind == frame::kind::EVENT {
            let json = record
                .payload
                .iter()
                .position(|&b| b == b'{')
                .expect("a JSON object after the time");
            texts.push(String::from_utf8(record.payload[json..].to_vec()).expect("UTF-8"));
        }
        rest = &rest[record.len..];
    }
    texts
}

#[test]
fn a_guard_event_goes_through_the_trace_typed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("guard.mtrace");
    let header = Header {
        start_unix_ms: 1_000_000,
        ..Header::default()
    };
    let events = [
        Event::GuardDecision {
            level: "suspend".into(),
            action: Act::Suspend,
            reason: "used 91.0 % ≥ suspend 90 %".into(),
            pids: vec![41, 42],
            outcome: Some(Outcome::DryRun),
        },
        Event::GuardDecision {
            level: "ok".into(),
            action: Act::Resume,
            reason: "run ended: resumed 41 (pipeline)".into(),
            pids: Vec::new(),
            outcome: None,
        },
    ];
    let mut writer = TraceWriter::create(&path, &header).expect("create");
    for event in &events {
        writer.event(1_000_500, event).expect("event");
    }
    writer.finish(&serde_json::json!({})).expect("finish");
    let data = std::fs::read(&path).expect("read back");
    let trace = read_bytes(&data).expect("reads");
    assert!(trace.damage.is_none(), "{:?}", trace.damage);
    let back: Vec<Event> = trace.events.into_iter().map(|e| e.event).collect();
    assert_eq!(back, events);
    let texts = event_texts(&data);
    assert!(
        texts[0].contains(r#""action":"suspend""#) && texts[0].contains(r#""outcome":"dry_run""#),
        "{}",
        texts[0]
    );
    assert!(
        !texts[1].contains("outcome"),
        "an unknown outcome is left out: {}",
        texts[1]
    );
}

/// A trace as the previous memtrace wrote it: the action as free text, no outcome (and, in the
/// second event, no pids either, which were always optional).
fn old_trace() -> Vec<u8> {
    let header = serde_json::to_vec(&Header {
        start_unix_ms: 1_000_000,
        ..Header::default()
    })
    .expect("header");
    let mut data = MAGIC.to_vec();
    data.extend_from_slice(&VERSION.to_le_bytes());
    data.extend_from_slice(&frame::encode(frame::kind::HEADER, &header));
    for (since, json) in [
        (
            250,
            r#"{"type":"guard_decision","level":"suspend","action":"suspend","reason":"used 93.0 %","pids":[7,8]}"#,
        ),
        (
            900,
            r#"{"type":"guard_decision","level":"ok","action":"resume","reason":"run ended: resumed 7 (pipeline)"}"#,
        ),
    ] {
        let mut payload = bytes::BytesMut::new();
        put_varint(&mut payload, since);
        payload.extend_from_slice(json.as_bytes());
        data.extend_from_slice(&frame::encode(frame::kind::EVENT, &payload));
    }
    data.extend_from_slice(&frame::encode(frame::kind::END, b"{}"));
    data
}

#[test]
fn an_old_guard_event_with_its_action_as_text_still_reads() {
    let trace = read_bytes(&old_trace()).expect("reads");
    assert!(trace.damage.is_none(), "{:?}", trace.damage);
    assert!(trace.end.is_some());
    let events: Vec<&Event> = trace.events.iter().map(|e| &e.event).collect();
    assert_eq!(
        events,
        [
            &Event::GuardDecision {
                level: "suspend".into(),
                action: Act::Suspend,
                reason: "used 93.0 %".into(),
                pids: vec![7, 8],
                outcome: None,
            },
            &Event::GuardDecision {
                level: "ok".into(),
                action: Act::Resume,
                reason: "run ended: resumed 7 (pipeline)".into(),
                pids: Vec::new(),
                outcome: None,
            },
        ]
    );
    assert_eq!(trace.events[0].time_unix_ms, 1_000_250);
    // Reports and exports name it as they always did.
    assert_eq!(label(Act::Suspend, "suspend", None), "suspend (suspend)");
}
