//! A real OpenSSH server on 127.0.0.1 for the remote-device tests: Debian's `openssh-server`
//! (`scripts/setup.sh` installs it), started here with a throw-away host key and client key,
//! logging in as the user running the tests.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    dir: tempfile::TempDir,
    pub port: u16,
    daemon: Option<Child>,
}

const SSHD: &str = "/usr/sbin/sshd";

impl Sshd {
    pub fn start() -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: the remote tests need Debian's openssh-server (scripts/setup.sh installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        for key in ["host_key", "client_key"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.path().join(key))
                .status()
                .expect("ssh-keygen (openssh-client)");
            assert!(status.success());
        }
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        // Root's sshd wants its privilege-separation directory (a fresh container lacks it).
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             PermitRootLogin prohibit-password\nPidFile {d}/sshd.pid\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("sshd_config"), config).unwrap();
        let mut sshd = Sshd {
            dir,
            port,
            daemon: None,
        };
        sshd.listen();
        sshd
    }

    /// Start the daemon (again) and wait until it accepts connections.
    pub fn listen(&mut self) {
        let daemon = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        self.daemon = Some(daemon);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not listen on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The ssh command a device profile's `[remote] command` names.
    pub fn command(&self) -> String {
        format!(
            "ssh -p {} -i {} -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR 127.0.0.1",
            self.port,
            self.dir.path().join("client_key").display()
        )
    }

    /// Drop every connection through this server (its clients killed), as a network would.
    pub fn drop_connections(&self) {
        let _ = Command::new("pkill")
            .args(["-f", &format!("^ssh -p {} ", self.port)])
            .status();
    }

    /// The device gone: the daemon stopped and every connection dropped.
    pub fn stop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        self.drop_connections();
    }

    /// A device profile measuring on this server's machine through ssh, running `hwnas` there
    /// (quick measurement settings, the host's ONNX Runtime library path, which is the
    /// device's too).
    pub fn device_profile(&self, dir: &Path, hwnas: &str) -> PathBuf {
        let library = std::env::var("ORT_DYLIB_PATH")
            .expect("ORT_DYLIB_PATH (./test.sh exports it, from scripts/setup.sh)");
        let path = dir.join("ssh-device.toml");
        std::fs::write(
            &path,
            format!(
                "name = \"ssh-device\"\nbackend = \"ort\"\n[ort]\nlibrary = \"{library}\"\n\
                 [measure]\nmin_runs = 10\nmax_ms = 50.0\ntarget_ci = 0.05\nround_ms = 5.0\n\
                 [remote]\ncommand = \"{}\"\nhwnas = \"{hwnas}\"\n",
                self.command()
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
