//! A real Slurm, controller and node on this machine (Debian's `slurmctld`/`slurmd`, which
//! `scripts/setup.sh` installs), running `examples/slurm/`: a job array profiles a space
//! shard by shard, the merge job joins the parts into the table one machine writes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hwnas_core::table::{LatencyTable, Row};

use crate::util::{ok, one_at_a_time, s};

/// slurmctld and slurmd with their configuration, state and logs in a temporary folder, on
/// free ports; `auth/none`, so no munge daemon is needed. Stopped when dropped.
struct Slurm {
    dir: tempfile::TempDir,
    daemons: Vec<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn stdout_of(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Slurm {
    fn start() -> Slurm {
        for daemon in ["/usr/sbin/slurmctld", "/usr/sbin/slurmd"] {
            assert!(
                Path::new(daemon).exists(),
                "{daemon} is missing: the Slurm test needs Debian's slurmctld and slurmd (scripts/setup.sh installs them)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let (node, user) = (stdout_of("hostname", &["-s"]), stdout_of("id", &["-un"]));
        let d = dir.path().display();
        let config = format!(
            "ClusterName=hwnas\nSlurmctldHost={node}\nSlurmUser={user}\nSlurmdUser={user}\n\
             AuthType=auth/none\nCredType=cred/none\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldPort={}\nSlurmdPort={}\nProctrackType=proctrack/pgid\nTaskPlugin=task/none\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nReturnToService=2\nMpiDefault=none\n\
             JobCompType=jobcomp/none\nJobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\n\
             SlurmctldLogFile={d}/slurmctld.log\nSlurmdLogFile={d}/slurmd.log\n\
             NodeName={node} CPUs=2 State=UNKNOWN\nPartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP\n",
            free_port(),
            free_port(),
        );
        for sub in ["state", "spool"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("slurm.conf"), config).unwrap();
        let mut slurm = Slurm {
            dir,
            daemons: Vec::new(),
        };
        for daemon in ["/usr/sbin/slurmctld", "/usr/sbin/slurmd"] {
            let child = Command::new(daemon)
                .args(["-D", "-f"])
                .arg(slurm.conf())
                .env("SLURM_CONF", slurm.conf())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{daemon}: {e}"));
            slurm.daemons.push(child);
        }
        let started = Instant::now();
        while slurm
            .command("sinfo")
            .args(["-h", "-o", "%T"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() != "idle")
            .unwrap_or(true)
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the Slurm node never became idle: {}",
                std::fs::read_to_string(slurm.dir.path().join("slurmctld.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        slurm
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// A Slurm client command talking to this cluster.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.conf())
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        c
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// `sbatch --wait`: the job (every task of an array) done, and whether it succeeded.
fn sbatch_wait(slurm: &Slurm, args: &[&str], env: &[(&str, &str)]) {
    let out = slurm
        .command("sbatch")
        .arg("--wait")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sbatch {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rows_by_key(path: &Path) -> Vec<Row> {
    let mut rows = LatencyTable::read(path).unwrap().rows;
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    rows
}

#[test]
fn a_slurm_job_array_profiles_the_shards_that_merge_into_the_whole_table() {
    let _serial = one_at_a_time();
    let slurm = Slurm::start();
    let dir = tempfile::tempdir().unwrap();
    let parts = dir.path().join("parts");
    let merged = dir.path().join("nb201.csv");
    let logs = format!("{}/%x-%a.log", dir.path().display());
    let env = [
        ("HWNAS", env!("CARGO_BIN_EXE_hwnas")),
        ("DEVICE", "device_profiles/mock.toml"),
        ("SPACE", "nb201"),
        ("PARTS", s(&parts)),
        ("OUT", s(&merged)),
    ];
    sbatch_wait(
        &slurm,
        &[
            "--array=0-2",
            "--output",
            &logs,
            "examples/slurm/profile.sh",
        ],
        &env,
    );
    let mut shards: Vec<String> = (0..3)
        .map(|i| {
            LatencyTable::read(&parts.join(format!("nb201-{i}.csv")))
                .unwrap()
                .meta("shard")
                .unwrap()
                .to_string()
        })
        .collect();
    shards.sort();
    assert_eq!(shards, ["1/3", "2/3", "3/3"]);
    sbatch_wait(
        &slurm,
        &["--output", &logs, "examples/slurm/merge.sh"],
        &env,
    );

    // The same space on one machine: the same ops, and (the simulated device being
    // deterministic) the same rows.
    let whole = dir.path().join("whole.csv");
    ok(&[
        "profile",
        "--device",
        "device_profiles/mock.toml",
        "--space",
        "nb201",
        "--out",
        s(&whole),
    ]);
    let (merged, whole) = (rows_by_key(&merged), rows_by_key(&whole));
    assert_eq!(merged.len(), 22);
    assert_eq!(merged, whole);
}
