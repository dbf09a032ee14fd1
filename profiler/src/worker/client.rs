//! The parent's side: a worker process measuring on this process's behalf, on this machine or
//! on a remote device, started again after it is killed or dies.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Hello, Message, Ready, Request, TAG, WireFile};
use crate::device::{DeviceProfile, RemoteSettings};
use crate::measure::MeasureConfig;
use crate::networks::{NetworkMeasureError, NetworkMeasurer, NetworkTime, Speed};
use crate::profile::{GroupMeasurer, GroupResult};
use hwnas_core::backend::NodeTime;
use hwnas_core::host::{Machine, MachineState};
use hwnas_core::network::Network;
use hwnas_core::op::{Op, Tensor};

/// How a worker is started: this executable, or a remote device's command.
#[derive(Debug, Clone)]
pub struct Launch {
    program: OsString,
    args: Vec<OsString>,
    /// The remote command, when the worker runs elsewhere.
    remote: Option<String>,
}

impl Launch {
    /// `exe worker`, on this machine.
    pub fn local(exe: PathBuf) -> Launch {
        Launch {
            program: exe.into(),
            args: vec!["worker".into()],
            remote: None,
        }
    }

    /// `<command> <hwnas> worker`, read by `sh` as the user wrote it in the profile.
    pub fn remote(remote: &RemoteSettings) -> Launch {
        let line = format!("{} {} worker", remote.command, remote.hwnas);
        Launch {
            program: "sh".into(),
            args: vec!["-c".into(), line.into()],
            remote: Some(remote.command.clone()),
        }
    }

    /// Any program that speaks the protocol.
    pub fn program(program: impl Into<OsString>, args: Vec<OsString>) -> Launch {
        Launch {
            program: program.into(),
            args,
            remote: None,
        }
    }

    /// The remote command, when the worker runs elsewhere.
    pub fn remote_command(&self) -> Option<&str> {
        self.remote.as_deref()
    }

    fn describe(&self) -> String {
        match &self.remote {
            Some(command) => format!("`{command}`"),
            None => format!("`{}`", Path::new(&self.program).display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot start the measuring process {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Fatal(String),
    #[error(
        "the device runs {device} and this host {host}: build and install the same hwnas on both"
    )]
    Mismatch { device: Hello, host: Hello },
    #[error(
        "no preparation or run finished within {0:.1} s (a hung kernel?): the measuring process was \
         killed; raise the device profile's timeout if the op is merely slow"
    )]
    Hung(f64),
    #[error("the measuring process died ({0})")]
    Died(String),
    /// A remote worker could not be started: the device cannot be reached.
    #[error("cannot reach the device `{device}` through {via}: {why}")]
    Unreachable {
        device: String,
        via: String,
        why: Box<WorkerError>,
    },
}

/// A request that failed: the worker could not be started (nothing more can be measured), or
/// it was started and hung, died or answered nonsense (it is stopped; the next request starts
/// another).
enum Failure {
    Start(WorkerError),
    Run(WorkerError),
}

/// The parent's side: a child process measuring on its behalf, restarted after a kill.
pub struct Worker {
    launch: Launch,
    device: String,
    /// The `Open` request, sent to every child started.
    open: String,
    timeout: Duration,
    running: Option<Running>,
    ready: Ready,
    state: Option<MachineState>,
    /// How many children were stopped: killed for hanging, died, or lost.
    stopped: usize,
}

impl Worker {
    /// Start the worker and have it open `profile`'s backend (its `[remote]` section aside;
    /// `ort_library` overrides the profile's, on the measuring side). `timeout` is the longest
    /// a single step (preparing an op, or one run) may take before the child is stopped.
    pub fn start(
        launch: Launch,
        profile: &DeviceProfile,
        ort_library: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<Worker, WorkerError> {
        let open = Request::Open {
            hello: Hello::this(),
            profile: Box::new(DeviceProfile {
                remote: None,
                ..profile.clone()
            }),
            ort_library,
            beat_ms: (timeout.as_millis() as u64 / 10).clamp(1, 1000),
        };
        let open = serde_json::to_string(&open).expect("a request serialises");
        let (running, ready) =
            Running::start(&launch, &open, timeout).map_err(|e| match launch.remote {
                Some(_) => WorkerError::Unreachable {
                    device: profile.name.clone(),
                    via: launch.describe(),
                    why: Box::new(e),
                },
                None => e,
            })?;
        Ok(Worker {
            launch,
            device: profile.name.clone(),
            open,
            timeout,
            running: Some(running),
            state: ready.state,
            ready,
            stopped: 0,
        })
    }

    /// What the first child reported: the backend's provenance, the machine, notes.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// The remote command, when the worker runs on another machine.
    pub fn remote_command(&self) -> Option<&str> {
        self.launch.remote_command()
    }

    fn ensure_running(&mut self) -> Result<&mut Running, WorkerError> {
        if self.running.is_none() {
            let (running, _) = Running::start(&self.launch, &self.open, self.timeout)?;
            self.running = Some(running);
        }
        Ok(self.running.as_mut().expect("just started"))
    }

    /// Send `request` and wait for its answer, calling `done` at each `Done`.
    fn exchange(&mut self, request: &Request, done: &mut dyn FnMut()) -> Result<Message, Failure> {
        let timeout = self.timeout;
        let json = serde_json::to_string(request).expect("a request serialises");
        let running = self.ensure_running().map_err(Failure::Start)?;
        let outcome = match writeln!(running.stdin, "{json}").and_then(|()| running.stdin.flush()) {
            // Its stdin is closed: it has exited, or is exiting.
            Err(_) => Err(WorkerError::Died(running.exit_status())),
            Ok(()) => loop {
                match running.next(timeout) {
                    Ok(Message::Beat) => continue,
                    Ok(Message::Done) => done(),
                    Ok(Message::Fatal(why)) => break Err(WorkerError::Fatal(why)),
                    Ok(answer) => break Ok(answer),
                    Err(e) => break Err(e),
                }
            },
        };
        outcome.map_err(|e| Failure::Run(self.stop(e)))
    }

    /// Stop the child (after a failure or a wrong answer); `e` passes through.
    fn stop(&mut self, e: WorkerError) -> WorkerError {
        if let Some(mut r) = self.running.take() {
            r.stop();
        }
        self.stopped += 1;
        e
    }

    fn wrong_answer(&mut self, answer: &Message) -> WorkerError {
        // On a character boundary: the answer may hold any text.
        let said: String = format!("{answer:?}").chars().take(200).collect();
        self.stop(WorkerError::Died(format!("answered {said}")))
    }

    /// Why nothing more can be measured: a worker that cannot be started again.
    fn unreachable(&self, e: WorkerError) -> String {
        match self.launch.remote {
            Some(_) => format!(
                "lost the device `{}`: it cannot be reached again through {} ({e})",
                self.device,
                self.launch.describe()
            ),
            None => format!("the measuring process cannot be started again: {e}"),
        }
    }

    /// [`Worker::exchange`] for the end-to-end requests, where any failure ends the command:
    /// why, in words naming the device when it cannot be reached.
    fn ask(&mut self, request: &Request, done: &mut dyn FnMut()) -> Result<Message, String> {
        self.exchange(request, done)
            .map_err(|failure| match failure {
                Failure::Start(e) => self.unreachable(e),
                Failure::Run(e) => e.to_string(),
            })
    }

    fn times(
        &mut self,
        request: &Request,
        count: usize,
        done: &mut dyn FnMut(),
    ) -> Result<Vec<NetworkTime>, NetworkMeasureError> {
        let why = match self.ask(request, done) {
            Ok(Message::Times(Ok(times))) if times.len() == count => return Ok(times),
            Ok(Message::Times(Err(why))) | Err(why) => why,
            Ok(other) => self.wrong_answer(&other).to_string(),
        };
        Err(NetworkMeasureError::Worker(why))
    }
}

impl GroupMeasurer for Worker {
    /// A group whose child hangs or dies is measured again op by op, so only the culprit
    /// fails; a lone op that hangs or dies is recorded failed with the reason. A child that
    /// cannot be started again ends the run.
    fn measure(&mut self, ops: &[Op], cfg: &MeasureConfig) -> GroupResult {
        let request = Request::Ops {
            ops: ops.iter().map(Op::key).collect(),
            measure: cfg.clone(),
        };
        let e = match self.exchange(&request, &mut || {}) {
            Ok(Message::Results { results, state }) if results.len() == ops.len() => {
                self.state = state;
                return Ok(results);
            }
            Ok(other) => self.wrong_answer(&other),
            Err(Failure::Start(e)) => return Err(self.unreachable(e)),
            Err(Failure::Run(e)) => e,
        };
        if ops.len() == 1 {
            return Ok(vec![Err(e.to_string())]);
        }
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            results.extend(self.measure(std::slice::from_ref(op), cfg)?);
        }
        Ok(results)
    }

    fn simulated(&self) -> bool {
        self.ready.simulated
    }

    fn machine(&self) -> Machine {
        self.ready.machine.clone()
    }

    fn machine_state(&self) -> Option<MachineState> {
        self.state
    }

    fn restarts(&self) -> usize {
        self.stopped
    }
}

impl NetworkMeasurer for Worker {
    fn measure_networks(
        &mut self,
        nets: &[Network],
        cfg: &MeasureConfig,
        speed: Speed,
        done: &mut dyn FnMut(),
    ) -> Result<Vec<NetworkTime>, NetworkMeasureError> {
        let request = Request::Networks {
            networks: nets.to_vec(),
            measure: cfg.clone(),
            speed,
        };
        self.times(&request, nets.len(), done)
    }

    fn measure_files(
        &mut self,
        files: &[(PathBuf, Tensor)],
        cfg: &MeasureConfig,
        speed: Speed,
        done: &mut dyn FnMut(),
    ) -> Result<Vec<NetworkTime>, NetworkMeasureError> {
        let request = Request::Files {
            files: files
                .iter()
                .map(|(path, input)| WireFile::read(path, *input))
                .collect::<Result<_, _>>()?,
            measure: cfg.clone(),
            speed,
        };
        self.times(&request, files.len(), done)
    }

    fn profile_file_nodes(
        &mut self,
        path: &Path,
        input: Tensor,
        runs: usize,
    ) -> Result<Option<Vec<NodeTime>>, NetworkMeasureError> {
        let request = Request::FileNodes {
            file: WireFile::read(path, input)?,
            runs,
        };
        let why = match self.ask(&request, &mut || {}) {
            Ok(Message::Nodes(Ok(nodes))) => return Ok(nodes),
            Ok(Message::Nodes(Err(why))) | Err(why) => why,
            Ok(other) => self.wrong_answer(&other).to_string(),
        };
        Err(NetworkMeasureError::Worker(why))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.close();
        }
    }
}

/// A started child: its stdin, its protocol messages, and the last lines of its stderr.
struct Running {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Event>,
    said: Arc<Mutex<VecDeque<String>>>,
}

enum Event {
    Message(Message),
    Garbled(String),
    Closed,
}

/// Lines of the child's stderr kept for the message when it dies (ssh's "Connection refused").
const STDERR_KEPT: usize = 3;

impl Running {
    /// A child started, greeted and opened; stopped again if that fails. Opening a runtime
    /// (loading an EP, a connection to a device) may take longer than one step.
    fn start(
        launch: &Launch,
        open: &str,
        timeout: Duration,
    ) -> Result<(Running, Ready), WorkerError> {
        let mut running = Running::spawn(launch)?;
        match running.handshake(open, timeout.max(Duration::from_secs(60))) {
            Ok(ready) => Ok((running, ready)),
            Err(e) => {
                running.stop();
                Err(e)
            }
        }
    }

    fn spawn(launch: &Launch) -> Result<Running, WorkerError> {
        let mut child = Command::new(&launch.program)
            .args(&launch.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| WorkerError::Spawn {
                program: launch.describe(),
                source,
            })?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let said = Arc::new(Mutex::new(VecDeque::new()));
        let kept = Arc::clone(&said);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                if kept.len() == STDERR_KEPT {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // A remote shell on a terminal ends lines with \r\n.
                let line = line.trim_end_matches('\r');
                let event = match line.strip_prefix(TAG) {
                    Some(json) => serde_json::from_str(json)
                        .map_or_else(|e| Event::Garbled(format!("{e}: {json}")), Event::Message),
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
        Ok(Running {
            child,
            stdin,
            messages,
            said,
        })
    }

    /// The child's hello, checked; then `open` sent, and the child's `Ready`.
    fn handshake(&mut self, open: &str, timeout: Duration) -> Result<Ready, WorkerError> {
        match self.next(timeout)? {
            Message::Hello(hello) if hello.is_this() => {}
            Message::Hello(device) => {
                return Err(WorkerError::Mismatch {
                    device,
                    host: Hello::this(),
                });
            }
            Message::Fatal(e) => return Err(WorkerError::Fatal(e)),
            other => {
                return Err(WorkerError::Died(format!(
                    "said {other:?} before hello: is it an hwnas of another version?"
                )));
            }
        }
        if writeln!(self.stdin, "{open}")
            .and_then(|()| self.stdin.flush())
            .is_err()
        {
            return Err(WorkerError::Died(self.exit_status()));
        }
        match self.next(timeout)? {
            Message::Ready(ready) => Ok(ready),
            Message::Fatal(e) => Err(WorkerError::Fatal(e)),
            other => Err(WorkerError::Died(format!(
                "said {other:?} before it was ready"
            ))),
        }
    }

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

    /// How a child that closed its pipes ended (waiting up to 2 s for it, then killing it),
    /// with the last lines it wrote to stderr.
    fn exit_status(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    self.stop();
                    break "closed its pipes without exiting; killed".into();
                }
                Err(e) => break e.to_string(),
            }
        };
        // The stderr thread may still be reading the child's last words.
        std::thread::sleep(Duration::from_millis(50));
        let said = self.said.lock().unwrap_or_else(|p| p.into_inner());
        match said.is_empty() {
            true => status,
            false => format!(
                "{status}; it said: {}",
                said.iter().cloned().collect::<Vec<_>>().join(" / ")
            ),
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The end of an idle child: its stdin closed, it exits by itself (and so cleans up what
    /// its runtime left in the temporary folder); killed if it has not within a second.
    fn close(mut self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        drop(self.stdin);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
