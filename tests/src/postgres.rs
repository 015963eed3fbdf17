//! A throwaway PostgreSQL server for the tests that need one: `initdb` in a temporary folder,
//! started with `pg_ctl` on a free loopback port with `max_prepared_transactions` set, as the
//! `postgres` user when the tests run as root (PostgreSQL refuses to run as root), and stopped
//! (immediate mode) when dropped.
//!
//! [`PostgresServer::for_test`] fails the test when no server can start, unless
//! `SWITCHYARD_SKIP_POSTGRES=1` is set, in which case it prints why and the test skips.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The variable that lets tests needing PostgreSQL skip (with a printed reason) when it cannot
/// start; without it they fail, as CI requires.
pub const SKIP_POSTGRES_ENV: &str = "SWITCHYARD_SKIP_POSTGRES";

/// A running PostgreSQL server owned by one test.
pub struct PostgresServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PostgresServer {
    /// Starts a server for the test `test`, or returns None (after printing why) when it cannot
    /// start and `SWITCHYARD_SKIP_POSTGRES=1` is set. Panics otherwise.
    pub fn for_test(test: &str) -> Option<PostgresServer> {
        match PostgresServer::start() {
            Ok(server) => Some(server),
            Err(reason) if std::env::var(SKIP_POSTGRES_ENV).as_deref() == Ok("1") => {
                eprintln!("skipping {test}: PostgreSQL cannot start ({reason}) and {SKIP_POSTGRES_ENV}=1");
                None
            }
            Err(reason) => panic!(
                "{test} needs PostgreSQL, which cannot start: {reason}\n(install the `postgresql` package; set {SKIP_POSTGRES_ENV}=1 to skip such tests locally)"
            ),
        }
    }

    /// Initializes and starts a server.
    pub fn start() -> Result<PostgresServer, String> {
        let bin = find_bin_dir().ok_or("initdb and pg_ctl are not on PATH nor under /usr/lib/postgresql/*/bin")?;
        let as_postgres = nix::unistd::geteuid().is_root();
        let dir = tempfile::Builder::new().prefix("switchyard-pg").tempdir().map_err(|e| e.to_string())?;
        if as_postgres {
            let owner = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .ok_or("running as root needs a `postgres` user to run the server as")?;
            nix::unistd::chown(dir.path(), Some(owner.uid), Some(owner.gid)).map_err(|e| e.to_string())?;
        }
        // The OS picks the port; it is free again by the time the server binds it.
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let server = PostgresServer { dir, bin, port, as_postgres };
        let data = server.data_dir();
        server.run_tool("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_prepared_transactions=20 -c fsync=off",
            server.dir.path().display()
        );
        let log = server.dir.path().join("server.log").display().to_string();
        server.run_tool("pg_ctl", &["-D", &data, "-o", &options, "-l", &log, "-w", "-t", "60", "start"]).map_err(
            |e| {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                format!("{e}\nserver log:\n{log}")
            },
        )?;
        Ok(server)
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a database.
    pub fn create_database(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
    }

    /// Runs `sql` with psql on `database` and returns its unaligned, tuples-only output.
    /// Panics when psql fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let output = Command::new("psql")
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", &self.url(database), "-c", sql])
            .output()
            .expect("psql runs");
        assert!(output.status.success(), "psql -c {sql:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim_end().to_string()
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run_tool(&self, tool: &str, args: &[&str]) -> Result<Output, String> {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let output = command.args(args).current_dir(self.dir.path()).output().map_err(|e| format!("{tool}: {e}"))?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(format!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let data = self.data_dir();
        if let Err(e) = self.run_tool("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]) {
            eprintln!("stopping the test PostgreSQL server: {e}");
        }
    }
}

/// The folder holding initdb and pg_ctl: on PATH, else the newest /usr/lib/postgresql/*/bin.
fn find_bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| Path::new(bin).join("initdb").is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}
