//! The child's side: `hwnas worker`, on this machine or on a remote device.

use std::cell::RefCell;
use std::io::{BufRead, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use super::{Hello, Message, Ready, Request, WireFile, send};
use crate::backend::{self, Backend};
use crate::measure::MeasureConfig;
use crate::networks::{self, NetworkTime, Speed};
use crate::profile::{prepare_and_measure, state_of};
use hwnas_core::backend::{Kernel, KernelError, KernelReport, Measurement};
use hwnas_core::host::Machine;
use hwnas_core::op::Op;

/// Say hello, open the backend the parent's [`Request::Open`] names, then answer requests until
/// stdin closes. An I/O error (the parent went away) ends it.
///
/// `orphaned` is called when stdin closes while a request is being measured: the parent is
/// gone (killed, or its connection to this device lost) and a kernel may never return, so the
/// CLI exits there rather than keep the device busy.
pub fn serve(
    input: impl BufRead + Send + 'static,
    output: impl Write + 'static,
    orphaned: fn(),
) -> std::io::Result<()> {
    let out = Rc::new(RefCell::new(Beats {
        out: Box::new(output),
        last: Instant::now(),
        every: Duration::from_millis(100),
        error: None,
    }));
    let say = |message: &Message| send(&mut *out.borrow_mut().out, message);
    say(&Message::Hello(Hello::this()))?;
    let busy = Arc::new(AtomicBool::new(false));
    let lines = read_lines(input, Arc::clone(&busy), orphaned);
    let Some(first) = lines.recv().ok().flatten() else {
        return Ok(());
    };
    // Opening may hang too (an EP that never finishes compiling).
    busy.store(true, Ordering::SeqCst);
    let opened = open(&first);
    busy.store(false, Ordering::SeqCst);
    let mut backend = match opened {
        Ok((backend, beat_ms)) => {
            out.borrow_mut().every = Duration::from_millis(beat_ms.max(1));
            say(&Message::Ready(Ready {
                provenance: backend.provenance(),
                machine: Machine::this(),
                state: state_of(backend.as_ref()),
                simulated: backend.simulated(),
                default_provider: backend.default_provider().to_string(),
                notes: backend.notes(),
            }))?;
            backend
        }
        Err(why) => return say(&Message::Fatal(why)),
    };
    while let Some(line) = lines.recv().ok().flatten() {
        if line.trim().is_empty() {
            continue;
        }
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => return say(&Message::Fatal(format!("unreadable request: {e}"))),
        };
        busy.store(true, Ordering::SeqCst);
        let answer = answer(backend.as_mut(), request, &out);
        busy.store(false, Ordering::SeqCst);
        if let Some(e) = out.borrow_mut().error.take() {
            return Err(e);
        }
        say(&answer)?;
    }
    Ok(())
}

/// Lines of `input` from a thread of their own (`None` at the end), so that the end of
/// stdin is seen while a kernel runs.
fn read_lines(
    input: impl BufRead + Send + 'static,
    busy: Arc<AtomicBool>,
    orphaned: fn(),
) -> Receiver<Option<String>> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in input.lines() {
            let Ok(line) = line else { break };
            if tx.send(Some(line)).is_err() {
                return;
            }
        }
        if busy.load(Ordering::SeqCst) {
            orphaned();
        }
        let _ = tx.send(None);
    });
    rx
}

/// The backend the first request opens, and the heartbeat period it asks for.
fn open(first: &str) -> Result<(Box<dyn Backend>, u64), String> {
    let request: Request =
        serde_json::from_str(first).map_err(|e| format!("unreadable first request: {e}"))?;
    let Request::Open {
        hello,
        profile,
        ort_library,
        beat_ms,
    } = request
    else {
        return Err("the first request must open the device".into());
    };
    if !hello.is_this() {
        return Err(format!(
            "this device runs {} and the host {hello}: install the same build on both",
            Hello::this()
        ));
    }
    let backend = backend::open(&profile, ort_library.as_deref())
        .map_err(|e| format!("device profile `{}`: {e}", profile.name))?;
    Ok((backend, beat_ms))
}

fn answer(backend: &mut dyn Backend, request: Request, beats: &Rc<RefCell<Beats>>) -> Message {
    match request {
        Request::Open { .. } => Message::Fatal("the device is open already".into()),
        Request::Ops { ops, measure } => match measure_ops(backend, &ops, &measure, beats) {
            Ok(results) => Message::Results {
                state: state_of(backend),
                results,
            },
            Err(why) => Message::Fatal(why),
        },
        Request::Networks {
            networks,
            measure,
            speed,
        } => {
            let mut done = || beats.borrow_mut().say(&Message::Done);
            let times = networks::measure_networks_wrapped(
                backend,
                &networks,
                &measure,
                speed,
                &mut done,
                &mut |k| beating(k, beats, Clock::Kernel),
            );
            Message::Times(times.map_err(|e| e.to_string()))
        }
        Request::Files {
            files,
            measure,
            speed,
        } => Message::Times(measure_files(backend, &files, &measure, speed, beats)),
        Request::FileNodes { file, runs } => Message::Nodes(
            tempfile::tempdir()
                .map_err(|e| format!("a temporary folder for {}: {e}", file.name))
                .and_then(|dir| {
                    let path = file.write(dir.path())?;
                    beats.borrow_mut().beat();
                    backend
                        .profile_file_nodes(&path, file.input, runs)
                        .map_err(|e| file.rename(&e.to_string(), &path))
                }),
        ),
    }
}

fn measure_ops(
    backend: &mut dyn Backend,
    keys: &[String],
    cfg: &MeasureConfig,
    beats: &Rc<RefCell<Beats>>,
) -> Result<Vec<Result<Measurement, String>>, String> {
    let ops = keys
        .iter()
        .map(|k| Op::from_key(k).map_err(|e| format!("unreadable request: {e}")))
        .collect::<Result<Vec<Op>, String>>()?;
    Ok(prepare_and_measure(backend, &ops, cfg, |k| {
        beating(k, beats, Clock::Wall)
    }))
}

/// The files, written to a temporary folder, timed as `networks::measure_files` times them;
/// errors name each file as the host knows it.
fn measure_files(
    backend: &mut dyn Backend,
    files: &[WireFile],
    cfg: &MeasureConfig,
    speed: Speed,
    beats: &Rc<RefCell<Beats>>,
) -> Result<Vec<NetworkTime>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary folder: {e}"))?;
    let mut local = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let sub = dir.path().join(i.to_string());
        std::fs::create_dir(&sub).map_err(|e| format!("{}: {e}", sub.display()))?;
        local.push((file.write(&sub)?, file.input));
        beats.borrow_mut().beat();
    }
    let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    let mut done = || beats.borrow_mut().say(&Message::Done);
    networks::measure_files_wrapped(backend, &local, &names, cfg, speed, &mut done, &mut |k| {
        beating(k, beats, Clock::Kernel)
    })
    .map_err(|e| {
        local
            .iter()
            .zip(files)
            .fold(e.to_string(), |message, ((path, _), file)| {
                file.rename(&message, path)
            })
    })
}

/// Which clock the loop times a beating kernel's runs by.
#[derive(Clone, Copy)]
enum Clock {
    /// The kernel's own (its thread's CPU time where it has one), as networks are timed in
    /// the host's process.
    Kernel,
    /// Wall time: ops (and their probe) have been measured this way in the worker since it
    /// existed, and a table's rows (in-network times, derived from wall time) and its probe
    /// must share a clock; tables measured before stay comparable.
    Wall,
}

fn beating(inner: Box<dyn Kernel>, beats: &Rc<RefCell<Beats>>, clock: Clock) -> Box<dyn Kernel> {
    beats.borrow_mut().beat();
    Box::new(Beating {
        inner,
        beats: Rc::clone(beats),
        clock,
    })
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
        if self.last.elapsed() >= self.every {
            self.say(&Message::Beat);
        }
    }

    fn say(&mut self, message: &Message) {
        if self.error.is_none() {
            self.last = Instant::now();
            if let Err(e) = send(&mut *self.out, message) {
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
    clock: Clock,
}

impl Beating {
    /// Beat after a run; its result, unless the parent is gone.
    fn beat_after<T>(&self, run: Result<T, KernelError>) -> Result<T, KernelError> {
        let mut beats = self.beats.borrow_mut();
        beats.beat();
        match &beats.error {
            Some(e) => Err(KernelError(format!("the parent process is gone ({e})"))),
            None => run,
        }
    }
}

impl Kernel for Beating {
    fn run(&mut self) -> Result<Duration, KernelError> {
        let t = self.inner.run();
        self.beat_after(t)
    }

    fn run_untimed(&mut self) -> Result<(), KernelError> {
        let done = self.inner.run_untimed();
        self.beat_after(done)
    }

    fn cpu_time_of_last_run(&self) -> Option<Duration> {
        match self.clock {
            Clock::Kernel => self.inner.cpu_time_of_last_run(),
            Clock::Wall => None,
        }
    }

    fn finish(&mut self) -> Result<KernelReport, KernelError> {
        let report = self.inner.finish();
        self.beats.borrow_mut().beat();
        report
    }
}
