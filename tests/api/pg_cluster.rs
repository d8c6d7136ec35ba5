//! A private PostgreSQL server for tests that stop and start it.
//!
//! Uses the same local binaries as `scripts/test` (which exports
//! `KEYSMITH_PG_BIN`), running them as `postgres` when we are root.

use std::{path::PathBuf, process::Command};

pub struct PgCluster {
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
    pub port: u16,
}

fn pg_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("KEYSMITH_PG_BIN") {
        return bin.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("PostgreSQL binaries (run scripts/test, which installs them)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl PgCluster {
    fn run(&self, tool: &str, args: &[&str]) {
        let tool = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(tool);
            c
        } else {
            Command::new(tool)
        };
        let out = cmd.args(args).output().expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start_new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        if is_root() {
            let ok = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status();
            assert!(
                ok.is_ok_and(|s| s.success()),
                "chown the cluster dir to postgres"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let cluster = Self {
            bin: pg_bin(),
            data: dir.path().join("data"),
            _dir: dir,
            port,
        };
        let data = cluster.data.to_str().expect("utf-8 path").to_owned();
        cluster.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        cluster.start();
        cluster
    }

    /// The cluster's data directory: tables, indexes and WAL, on disk.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start(&self) {
        let data = self.data.to_str().expect("utf-8 path");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.parent().expect("parent").display()
        );
        let log = self.data.parent().expect("parent").join("server.log");
        let log = log.to_str().expect("utf-8 path");
        self.run(
            "pg_ctl",
            &[
                "-D", data, "-l", log, "-w", "-t", "30", "-o", &opts, "start",
            ],
        );
    }

    pub fn stop(&self) {
        let data = self.data.to_str().expect("utf-8 path");
        self.run("pg_ctl", &["-D", data, "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap_or_default().to_owned();
        let _ = std::panic::catch_unwind(|| {
            let _ = Command::new(self.bin.join("pg_ctl"))
                .args(["-D", &data, "-m", "immediate", "stop"])
                .output();
        });
        if is_root() {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .args(["-D", &data, "-m", "immediate", "stop"])
                .output();
        }
    }
}
