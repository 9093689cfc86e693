//! A private PostgreSQL server for a test: Debian's `postgresql` (`scripts/setup.sh
//! --test-tools` installs it), a fresh cluster in a temporary folder (`initdb`), reached
//! only through a unix socket in that folder (no TCP port, no system service). The
//! server runs as the test's child; when the test runs as root it runs as the
//! `postgres` user, since PostgreSQL refuses root. It stops when the value is dropped
//! (also when the test fails) and, should the test process die without unwinding, when
//! the thread that started it ends (Linux's parent-death signal).

use std::{
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// The database superuser `initdb` creates (its name only; no OS user needed).
pub const SUPERUSER: &str = "postgres";

/// A running server; see the module's documentation.
pub struct LocalPostgres {
    bin: PathBuf,
    server: Option<Child>,
    /// Holds the cluster, the socket and the log; removed after the server stops.
    dir: tempfile::TempDir,
}

impl LocalPostgres {
    /// Creates a cluster and starts its server; panics with the log when it cannot.
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("saeidx-postgres-")
            .tempdir()
            .unwrap();
        let owner = server_user();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut pg = Self {
            bin,
            server: None,
            dir,
        };
        let data = pg.dir.path().join("data");
        // Both run in the folder they own: the test's own folder may be closed to them.
        let init = as_user(Command::new(pg.bin.join("initdb")), owner, false)
            .current_dir(pg.dir.path())
            .args(["--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])
            .arg(format!("--username={SUPERUSER}"))
            .arg("-D")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb failed: {}",
            text(&init.stderr)
        );
        let log = fs::File::create(pg.log_path()).unwrap();
        let server = as_user(Command::new(pg.bin.join("postgres")), owner, true)
            .current_dir(pg.dir.path())
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(pg.dir.path())
            .args(["-c", "listen_addresses=", "-c", "fsync=off"])
            .args(["-c", "full_page_writes=off", "-c", "synchronous_commit=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        pg.server = Some(server);
        pg.wait_until_ready();
        pg
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn wait_until_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.server.as_mut().unwrap().try_wait().unwrap() {
                panic!("postgres exited ({status}):\n{}", self.log());
            }
            if self.try_psql(&["-c", "SELECT 1"]).status.success() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "postgres did not accept connections within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The libpq environment that reaches this server (for psql and scripts).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGHOST", self.dir.path().display().to_string()),
            ("PGPORT", "5432".into()),
            ("PGUSER", SUPERUSER.into()),
            ("PGDATABASE", "postgres".into()),
            ("PSQL", self.psql_path().display().to_string()),
        ]
    }

    /// The server's own psql.
    pub fn psql_path(&self) -> PathBuf {
        self.bin.join("psql")
    }

    fn try_psql(&self, args: &[&str]) -> Output {
        Command::new(self.psql_path())
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
            .args(args)
            .envs(self.env())
            .output()
            .unwrap()
    }

    /// Runs SQL and returns what psql prints (unaligned, tuples only).
    pub fn sql(&self, sql: &str) -> String {
        let output = self.try_psql(&["-c", sql]);
        assert!(
            output.status.success(),
            "psql -c {sql:?}: {}",
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    /// Runs a file of SQL.
    pub fn sql_file(&self, file: &Path) {
        let output = self.try_psql(&["-f", file.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "psql -f {}: {}",
            file.display(),
            text(&output.stderr)
        );
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        // SIGINT: "fast shutdown" (clients disconnected, then a clean stop).
        // SAFETY: kill has no memory effects; the pid is our own child's.
        unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGINT) };
        let started = Instant::now();
        while server.try_wait().ok().flatten().is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                eprintln!("postgres did not stop within 20 s; killing it");
                let _ = server.kill();
                let _ = server.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if std::thread::panicking() {
            eprintln!("postgres log:\n{}", self.log());
        }
    }
}

/// Where Debian's PostgreSQL keeps its programs (`/usr/lib/postgresql/VERSION/bin`, the
/// newest), else the folder of a `postgres` on PATH.
fn bin_dir() -> PathBuf {
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return bin;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path).find(|dir| dir.join("postgres").is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres, no postgres on PATH): run `bash scripts/setup.sh --test-tools`"
            )
        })
}

/// The user the server runs as: `postgres` (uid, gid) when the test runs as root, else
/// `None` (the test's own user).
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "running as root needs the postgres user to run PostgreSQL (apt-get install postgresql creates it)"
        );
        text(&output.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

/// `command` set to run as `owner` (when given) and, with `tied`, to get SIGINT when the
/// thread that spawns it ends.
fn as_user(mut command: Command, owner: Option<(u32, u32)>, tied: bool) -> Command {
    // SAFETY: between fork and exec the closure only makes async-signal-safe system
    // calls. The identity changes first: a change of user clears the parent-death signal.
    unsafe {
        command.pre_exec(move || {
            if let Some((uid, gid)) = owner
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            if tied && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
