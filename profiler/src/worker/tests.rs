//! The protocol from both ends: the child's `serve` over in-memory pipes, and the parent's
//! `Worker` against `sh` scripts standing in for children that hang, die or differ.

use std::cell::RefCell;
use std::ffi::OsString;
use std::io::{Cursor, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::profile::GroupMeasurer;
use hwnas_core::op::Op;

fn mock_profile() -> DeviceProfile {
    DeviceProfile::parse("name = \"mock\"\nbackend = \"mock\"\n").unwrap()
}

fn open_line(hello: Hello) -> String {
    serde_json::to_string(&Request::Open {
        hello,
        profile: Box::new(mock_profile()),
        ort_library: None,
        beat_ms: 1,
    })
    .unwrap()
}

/// Everything `serve` says to `lines`, parsed.
fn serve_lines(lines: &[String]) -> Vec<Message> {
    let input = Cursor::new(lines.join("\n").into_bytes());
    let out = SharedBuf::default();
    serve(input, out.clone(), || {}).unwrap();
    let text = String::from_utf8(out.0.borrow().clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l.strip_prefix(TAG).unwrap()).unwrap())
        .collect()
}

#[derive(Clone, Default)]
struct SharedBuf(Rc<RefCell<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The child's side: hello, ready, then one answer per request, in order; an unreadable
/// request is fatal.
#[test]
fn serve_answers_each_request_in_order() {
    let cfg = MeasureConfig {
        min_runs: 5,
        ..MeasureConfig::default()
    };
    let ops = |ops: &[&str]| {
        serde_json::to_string(&Request::Ops {
            ops: ops.iter().map(|s| s.to_string()).collect(),
            measure: cfg.clone(),
        })
        .unwrap()
    };
    let messages = serve_lines(&[
        open_line(Hello::this()),
        ops(&["add-in:1x8x8x8", "gap-in:1x8x8x8"]),
        String::new(),
        ops(&["add-in:1x16x8x8"]),
        ops(&["nonsense"]),
    ]);
    assert!(matches!(&messages[0], Message::Hello(h) if h.is_this()));
    assert!(
        matches!(&messages[1], Message::Ready(r) if r.simulated && !r.provenance.is_empty() && r.state.is_none())
    );
    let results: Vec<&Vec<Result<Measurement, String>>> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Results { results, state } => {
                assert!(state.is_none(), "a simulated device has no load");
                Some(results)
            }
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].len(), 2);
    assert!(results[0][0].is_ok() && results[0][1].is_ok());
    assert_eq!(results[1].len(), 1);
    assert!(matches!(messages.last(), Some(Message::Fatal(e)) if e.contains("nonsense")));
    // The mock's times are a function of the op: the child measures what was asked.
    let add = |r: &Result<Measurement, String>| r.as_ref().unwrap().stats.median;
    assert!(add(&results[1][0]) > add(&results[0][0]));
}

/// A host of another build is refused with both builds named, and so is a first request
/// that does not open the device; errors of network requests come back as the answer.
#[test]
fn serve_refuses_another_build_and_answers_network_errors() {
    let old = Hello {
        protocol: 1,
        version: "0.0.9".into(),
    };
    let messages = serve_lines(&[open_line(old)]);
    let Some(Message::Fatal(why)) = messages.last() else {
        panic!("{messages:?}");
    };
    assert!(
        why.contains("hwnas 0.0.9 (worker protocol 1)") && why.contains(&Hello::this().to_string()),
        "{why}"
    );
    let ops = serde_json::to_string(&Request::Ops {
        ops: vec![],
        measure: MeasureConfig::default(),
    })
    .unwrap();
    let messages = serve_lines(std::slice::from_ref(&ops));
    assert!(matches!(messages.last(), Some(Message::Fatal(e)) if e.contains("must open")));

    let networks = serde_json::to_string(&Request::Networks {
        networks: vec![],
        measure: MeasureConfig::default(),
        speed: Speed {
            probe_nominal_us: None,
        },
    })
    .unwrap();
    let messages = serve_lines(&[open_line(Hello::this()), networks]);
    assert!(
        matches!(messages.last(), Some(Message::Times(Ok(t))) if t.is_empty()),
        "{messages:?}"
    );
}

/// `sh -c SCRIPT`, where `$HELLO` and `$READY` are the lines a real worker would say.
fn stand_in(script: &str, hello: &Hello) -> Launch {
    let line = |m: &Message| format!("'{TAG}{}'", serde_json::to_string(m).unwrap());
    let ready = Message::Ready(Ready {
        provenance: vec![("backend".into(), "stand-in".into())],
        machine: Machine::this(),
        state: None,
        simulated: false,
        default_provider: String::new(),
        notes: vec![],
    });
    let script = format!(
        "HELLO={}; READY={}; {script}",
        line(&Message::Hello(hello.clone())),
        line(&ready)
    );
    Launch::program("sh", vec![OsString::from("-c"), OsString::from(script)])
}

fn start(script: &str, timeout: Duration) -> Result<Worker, WorkerError> {
    let launch = stand_in(script, &Hello::this());
    Worker::start(launch, &mock_profile(), None, timeout)
}

/// A child that never answers is stopped after the timeout, and one that exits is named
/// as dead; both come back as the op's failure, not the run's.
#[test]
fn a_silent_or_dead_child_fails_its_op() {
    let op = Op::from_key("add-in:1x8x8x8").unwrap();
    let cfg = MeasureConfig::default();
    let handshake = "echo \"$HELLO\"; read open; echo \"$READY\";";
    let mut silent = start(&format!("{handshake} sleep 30"), Duration::from_millis(300)).unwrap();
    let t = Instant::now();
    let r = silent.measure(&[op, op], &cfg).unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(r.len(), 2);
    assert!(r[0].as_ref().unwrap_err().contains("within 0.3 s"), "{r:?}");
    // The group, then each op alone: three children stopped.
    assert_eq!(silent.restarts(), 3);

    let mut dead = start(
        &format!("{handshake} echo oops >&2; exit 3"),
        Duration::from_secs(5),
    )
    .unwrap();
    let r = dead.measure(&[op], &cfg).unwrap();
    let e = r[0].as_ref().unwrap_err();
    assert!(e.contains("died (exit status: 3; it said: oops)"), "{e}");

    let fatal = format!("echo \"$HELLO\"; read open; echo '{TAG}{{\"Fatal\":\"no EP\"}}'");
    let fatal = start(&fatal, Duration::from_secs(5));
    assert!(matches!(fatal, Err(WorkerError::Fatal(m)) if m == "no EP"));
}

/// A device of another build is refused at the start with both builds named; a worker that
/// cannot be started again ends the run (the error names the device), where one that died
/// only fails its op.
#[test]
fn another_build_is_refused_and_a_lost_device_ends_the_run() {
    let old = Hello {
        protocol: 1,
        version: "0.0.9".into(),
    };
    let launch = stand_in("echo \"$HELLO\"; read open", &old);
    let e = Worker::start(launch, &mock_profile(), None, Duration::from_secs(5))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("the device runs hwnas 0.0.9 (worker protocol 1)")
            && e.contains(&format!("this host {}", Hello::this())),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let script = format!(
        "[ -e {m} ] && {{ echo 'ssh: connect to host pi port 22: Connection refused' >&2; exit 255; }}; \
         touch {m}; echo \"$HELLO\"; read open; echo \"$READY\"; exit 3",
        m = marker.display()
    );
    let mut worker = start(&script, Duration::from_secs(5)).unwrap();
    let op = Op::from_key("add-in:1x8x8x8").unwrap();
    let r = worker.measure(&[op], &MeasureConfig::default()).unwrap();
    assert!(
        r[0].as_ref().unwrap_err().contains("exit status: 3"),
        "{r:?}"
    );
    let e = worker
        .measure(&[op], &MeasureConfig::default())
        .unwrap_err();
    assert!(
        e.contains("cannot be started again") && e.contains("Connection refused"),
        "{e}"
    );
}
