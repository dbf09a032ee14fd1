//! Measuring in a worker process, so a kernel that hangs or crashes its runtime costs one op,
//! not the run.
//!
//! ONNX Runtime checks its terminate flag only between nodes, and a lone op is one node: a
//! kernel that never returns cannot be stopped from inside the process, and an execution
//! provider that aborts takes the process with it. So the profiler measures through a
//! [`Worker`]: a child process (the CLI's hidden `hwnas worker`) that runs [`serve`] over a
//! backend, reading one [`Request`] per line on stdin and answering on stdout. While it
//! prepares and runs kernels it sends a heartbeat at least every `beat_ms`. When no heartbeat
//! comes within the timeout, the parent kills the child; a group of ops is then measured again
//! one op at a time (each in a fresh child when needed), so exactly the op that hangs is
//! recorded failed and the others are measured.

use std::cell::RefCell;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::measure::MeasureConfig;
use crate::profile::{GroupMeasurer, prepare_and_measure};
use hwnas_core::backend::{Kernel, KernelError, KernelReport, Measurement};
use hwnas_core::op::Op;

/// What the parent asks: measure these ops (keys) together, beating every `beat_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub ops: Vec<String>,
    pub measure: MeasureConfig,
    pub beat_ms: u64,
}

/// What the child says, one per line after [`TAG`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Message {
    /// The backend is open; its provenance, for the table's header.
    Ready(Vec<(String, String)>),
    /// The backend could not be opened, or a request could not be read.
    Fatal(String),
    /// Still working.
    Beat,
    /// One result per requested op, in order.
    Results(Vec<Result<Measurement, String>>),
}

/// Marks the protocol's lines on the child's stdout; anything else there (a runtime's own
/// chatter) is passed on to stderr.
pub const TAG: &str = "hwnas-worker ";

/// Tell the parent the backend could not be opened (the child's only message then).
pub fn refuse(mut output: impl Write, why: &str) -> std::io::Result<()> {
    send(&mut output, &Message::Fatal(why.to_string()))
}

fn send(out: &mut dyn Write, message: &Message) -> std::io::Result<()> {
    let json = serde_json::to_string(message).map_err(std::io::Error::other)?;
    writeln!(out, "{TAG}{json}")?;
    out.flush()
}

/// The child's side: tell the parent the backend is ready, then answer requests until stdin
/// closes. An I/O error (the parent went away) ends it.
pub fn serve(
    backend: &mut dyn Backend,
    input: impl BufRead,
    output: impl Write + 'static,
) -> std::io::Result<()> {
    let out = Rc::new(RefCell::new(Beats {
        out: Box::new(output),
        last: Instant::now(),
        every: Duration::from_millis(100),
        error: None,
    }));
    send(
        &mut *out.borrow_mut().out,
        &Message::Ready(backend.provenance()),
    )?;
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                let message = Message::Fatal(format!("unreadable request: {e}"));
                return send(&mut *out.borrow_mut().out, &message);
            }
        };
        out.borrow_mut().every = Duration::from_millis(request.beat_ms.max(1));
        let results = measure_request(backend, &request, &out);
        if let Some(e) = out.borrow_mut().error.take() {
            return Err(e);
        }
        let message = results.map_or_else(Message::Fatal, Message::Results);
        send(&mut *out.borrow_mut().out, &message)?;
    }
    Ok(())
}

fn measure_request(
    backend: &mut dyn Backend,
    request: &Request,
    beats: &Rc<RefCell<Beats>>,
) -> Result<Vec<Result<Measurement, String>>, String> {
    let ops = request
        .ops
        .iter()
        .map(|k| Op::from_key(k).map_err(|e| format!("unreadable request: {e}")))
        .collect::<Result<Vec<Op>, String>>()?;
    Ok(prepare_and_measure(
        backend,
        &ops,
        &request.measure,
        |inner| {
            beats.borrow_mut().beat();
            Box::new(Beating {
                inner,
                beats: Rc::clone(beats),
            })
        },
    ))
}

/// The heartbeat: written at most every `every`, from between kernel runs.
struct Beats {
    out: Box<dyn Write>,
    last: Instant,
    every: Duration,
    /// A failed write, kept for `serve` to return (a kernel's run cannot).
    error: Option<std::io::Error>,
}

impl Beats {
    fn beat(&mut self) {
        if self.error.is_none() && self.last.elapsed() >= self.every {
            self.last = Instant::now();
            if let Err(e) = send(&mut *self.out, &Message::Beat) {
                self.error = Some(e);
            }
        }
    }
}

/// A kernel that beats after each run (outside the timed call), and stops once a beat cannot
/// be written: the parent is gone (killed), and nobody wants the rest of the group.
struct Beating {
    inner: Box<dyn Kernel>,
    beats: Rc<RefCell<Beats>>,
}

impl Kernel for Beating {
    fn run(&mut self) -> Result<Duration, KernelError> {
        let t = self.inner.run();
        let mut beats = self.beats.borrow_mut();
        beats.beat();
        match &beats.error {
            Some(e) => Err(KernelError(format!("the parent process is gone ({e})"))),
            None => t,
        }
    }

    fn finish(&mut self) -> Result<KernelReport, KernelError> {
        let report = self.inner.finish();
        self.beats.borrow_mut().beat();
        report
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot start the measuring process `{program}`: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Fatal(String),
    #[error(
        "no preparation or run finished within {0:.1} s (a hung kernel?): the measuring process was \
         killed; raise the device profile's timeout if the op is merely slow"
    )]
    Hung(f64),
    #[error("the measuring process died ({0})")]
    Died(String),
}

/// The parent's side: a child process measuring on its behalf, restarted after a kill.
pub struct Worker {
    program: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
    running: Option<Running>,
    provenance: Vec<(String, String)>,
    /// How many children were killed for hanging or died.
    pub stopped: usize,
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Event>,
}

enum Event {
    Message(Message),
    Garbled(String),
    Closed,
}

impl Worker {
    /// Start `program args` and wait for it to open its backend. `timeout` is the longest a
    /// single step (preparing an op, or one run of it) may take before the child is stopped.
    pub fn start(
        program: PathBuf,
        args: Vec<OsString>,
        timeout: Duration,
    ) -> Result<Worker, WorkerError> {
        let mut worker = Worker {
            program,
            args,
            timeout,
            running: None,
            provenance: Vec::new(),
            stopped: 0,
        };
        worker.ensure_running()?;
        Ok(worker)
    }

    /// The backend's provenance, as the first child reported it.
    pub fn provenance(&self) -> &[(String, String)] {
        &self.provenance
    }

    fn ensure_running(&mut self) -> Result<&mut Running, WorkerError> {
        if self.running.is_none() {
            let mut child = Command::new(&self.program)
                .args(&self.args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|source| WorkerError::Spawn {
                    program: self.program.clone(),
                    source,
                })?;
            let stdin = child.stdin.take().expect("piped stdin");
            let stdout = child.stdout.take().expect("piped stdout");
            let (tx, messages) = channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let event = match line.strip_prefix(TAG) {
                        Some(json) => serde_json::from_str(json).map_or_else(
                            |e| Event::Garbled(format!("{e}: {json}")),
                            Event::Message,
                        ),
                        None => {
                            eprintln!("{line}");
                            continue;
                        }
                    };
                    if tx.send(event).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Event::Closed);
            });
            let mut running = Running {
                child,
                stdin,
                messages,
            };
            // Opening a runtime (loading an EP, calibrating its overhead) is slower than a step.
            let startup = self.timeout.max(Duration::from_secs(60));
            match running.next(startup) {
                Ok(Message::Ready(provenance)) => {
                    if self.provenance.is_empty() {
                        self.provenance = provenance;
                    }
                }
                Ok(Message::Fatal(e)) => {
                    running.stop();
                    return Err(WorkerError::Fatal(e));
                }
                Ok(other) => {
                    running.stop();
                    return Err(WorkerError::Died(format!(
                        "said {other:?} before it was ready"
                    )));
                }
                Err(e) => {
                    running.stop();
                    return Err(e);
                }
            }
            self.running = Some(running);
        }
        Ok(self.running.as_mut().expect("just started"))
    }

    /// Measure `ops` in one child; a hang or a death stops the child and is the error.
    fn try_group(
        &mut self,
        ops: &[Op],
        cfg: &MeasureConfig,
    ) -> Result<Vec<Result<Measurement, String>>, WorkerError> {
        let timeout = self.timeout;
        let request = Request {
            ops: ops.iter().map(Op::key).collect(),
            measure: cfg.clone(),
            beat_ms: (timeout.as_millis() as u64 / 10).clamp(1, 1000),
        };
        let running = self.ensure_running()?;
        let json = serde_json::to_string(&request).expect("a request serialises");
        let outcome = match writeln!(running.stdin, "{json}").and_then(|()| running.stdin.flush()) {
            // Its stdin is closed: it has exited, or is exiting.
            Err(_) => Err(WorkerError::Died(running.exit_status())),
            Ok(()) => loop {
                match running.next(timeout) {
                    Ok(Message::Beat) => continue,
                    Ok(Message::Results(r)) if r.len() == ops.len() => break Ok(r),
                    Ok(other) => break Err(WorkerError::Died(format!("answered {other:?}"))),
                    Err(e) => break Err(e),
                }
            },
        };
        if outcome.is_err() {
            if let Some(mut r) = self.running.take() {
                r.stop();
            }
            self.stopped += 1;
        }
        outcome
    }
}

impl Running {
    /// The next protocol message, or why none came within `timeout`.
    fn next(&mut self, timeout: Duration) -> Result<Message, WorkerError> {
        match self.messages.recv_timeout(timeout) {
            Ok(Event::Message(m)) => Ok(m),
            Ok(Event::Garbled(line)) => Err(WorkerError::Died(format!("garbled answer: {line}"))),
            Ok(Event::Closed) | Err(RecvTimeoutError::Disconnected) => {
                Err(WorkerError::Died(self.exit_status()))
            }
            Err(RecvTimeoutError::Timeout) => Err(WorkerError::Hung(timeout.as_secs_f64())),
        }
    }

    /// How a child that closed its pipes ended (waiting up to 2 s for it, then killing it).
    fn exit_status(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return e.to_string(),
            }
        }
        self.stop();
        "closed its pipes without exiting; killed".into()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut r) = self.running.take() {
            r.stop();
        }
    }
}

impl GroupMeasurer for Worker {
    /// A group whose child hangs or dies is measured again op by op, so only the culprit
    /// fails; a lone op that hangs or dies is recorded failed with the reason.
    fn measure(&mut self, ops: &[Op], cfg: &MeasureConfig) -> Vec<Result<Measurement, String>> {
        match self.try_group(ops, cfg) {
            Ok(results) => results,
            Err(e @ (WorkerError::Spawn { .. } | WorkerError::Fatal(_))) => {
                vec![Err(e.to_string()); ops.len()]
            }
            Err(_) if ops.len() > 1 => ops
                .iter()
                .flat_map(|op| self.measure(std::slice::from_ref(op), cfg))
                .collect(),
            Err(e) => vec![Err(e.to_string())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mock::MockDevice;

    /// The child's side over in-memory pipes: ready, then one answer per request, in order; an
    /// unreadable request is fatal.
    #[test]
    fn serve_answers_each_request_in_order() {
        let cfg = MeasureConfig {
            min_runs: 5,
            ..MeasureConfig::default()
        };
        let request = |ops: &[&str]| {
            serde_json::to_string(&Request {
                ops: ops.iter().map(|s| s.to_string()).collect(),
                measure: cfg.clone(),
                beat_ms: 1,
            })
            .unwrap()
        };
        let input = format!(
            "{}\n\n{}\n{}\n",
            request(&["add-in:1x8x8x8", "gap-in:1x8x8x8"]),
            request(&["add-in:1x16x8x8"]),
            request(&["nonsense"]),
        );
        let out = SharedBuf::default();
        serve(&mut MockDevice::default(), input.as_bytes(), out.clone()).unwrap();
        let text = String::from_utf8(out.0.borrow().clone()).unwrap();
        let messages: Vec<Message> = text
            .lines()
            .map(|l| serde_json::from_str(l.strip_prefix(TAG).unwrap()).unwrap())
            .collect();
        assert!(matches!(&messages[0], Message::Ready(p) if !p.is_empty()));
        let results: Vec<&Vec<Result<Measurement, String>>> = messages
            .iter()
            .filter_map(|m| match m {
                Message::Results(r) => Some(r),
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

    /// A child that never answers is stopped after the timeout, and one that exits is named
    /// as dead; both come back as the op's failure, not the run's.
    #[test]
    fn a_silent_or_dead_child_fails_its_op() {
        let op = Op::from_key("add-in:1x8x8x8").unwrap();
        let cfg = MeasureConfig::default();
        // `sh` stands in for a worker: ready at once, then silent (or gone).
        let ready = format!(
            "{TAG}{}",
            serde_json::to_string(&Message::Ready(vec![])).unwrap()
        );
        let script = |then: &str| {
            vec![
                OsString::from("-c"),
                OsString::from(format!("echo '{ready}'; {then}")),
            ]
        };
        let mut silent =
            Worker::start("sh".into(), script("sleep 30"), Duration::from_millis(300)).unwrap();
        let t = Instant::now();
        let r = silent.measure(&[op, op], &cfg);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert_eq!(r.len(), 2);
        assert!(r[0].as_ref().unwrap_err().contains("within 0.3 s"), "{r:?}");
        // The group, then each op alone: three children stopped.
        assert_eq!(silent.stopped, 3);

        let mut dead =
            Worker::start("sh".into(), script("exit 3"), Duration::from_secs(5)).unwrap();
        let r = dead.measure(&[op], &cfg);
        assert!(
            r[0].as_ref().unwrap_err().contains("died (exit status: 3)"),
            "{r:?}"
        );

        let fatal = vec![
            OsString::from("-c"),
            OsString::from(format!("echo '{TAG}{{\"Fatal\":\"no EP\"}}'")),
        ];
        let e = Worker::start("sh".into(), fatal, Duration::from_secs(5));
        assert!(matches!(e, Err(WorkerError::Fatal(m)) if m == "no EP"));
    }
}
