//! Private database servers for the storage tests: a PostgreSQL or
//! MariaDB instance of its own in a temporary folder, on a free loopback
//! port, started from the Debian packages' binaries (no system service),
//! and stopped when dropped.
//!
//! `scripts/test.sh` installs the packages. Where a server's binaries are
//! missing, [`DbServer::start`] returns `None` and the test says it
//! skipped, except under CI (`CI` or `SWITCHYARD_REQUIRE_DATABASES` set, as
//! `scripts/test.sh` does), where that is a failure.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Mariadb,
}

const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The PostgreSQL superuser the test instance is created with.
const POSTGRES_USER: &str = "switchyard";

/// A running private server. `url` names a fresh empty database on it.
pub struct DbServer {
    kind: Kind,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// A database URL for the host's `storage.url`.
    pub url: String,
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local addr").port()
}

/// `program` with `args`, as the `postgres` user when running as root
/// (PostgreSQL refuses to run as root).
fn as_postgres(program: &Path, args: &[&str]) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program).args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

fn missing(what: &str) -> Option<DbServer> {
    assert!(
        std::env::var_os("CI").is_none() && std::env::var_os("SWITCHYARD_REQUIRE_DATABASES").is_none(),
        "{what} is not installed: scripts/test.sh installs it"
    );
    eprintln!("skipped: {what} is not installed (scripts/test.sh installs it)");
    None
}

impl DbServer {
    /// Start a private server of `kind`; `None` if its binaries are not
    /// installed (outside CI).
    pub fn start(kind: Kind) -> Option<DbServer> {
        match kind {
            Kind::Postgres if !Path::new(POSTGRES_BIN).join("postgres").is_file() => missing("PostgreSQL 15"),
            Kind::Mariadb if which("mariadbd").is_none() => missing("MariaDB"),
            _ => {
                let dir = tempfile::Builder::new().prefix("switchyard-db-").tempdir().expect("temp folder");
                let port = free_port();
                let mut server = DbServer { kind, dir, port, child: None, url: String::new() };
                server.init();
                server.run();
                server.url = match kind {
                    Kind::Postgres => format!("postgres://{POSTGRES_USER}@127.0.0.1:{port}/postgres"),
                    Kind::Mariadb => {
                        server.mariadb_sql("CREATE DATABASE switchyard");
                        format!("mysql://root@127.0.0.1:{port}/switchyard")
                    }
                };
                Some(server)
            }
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn init(&self) {
        let data = self.data();
        let status = match self.kind {
            Kind::Postgres => {
                if running_as_root() {
                    // The instance's folder belongs to the user that runs it.
                    let status = Command::new("chown").args(["postgres:postgres"]).arg(self.dir.path()).status().expect("chown");
                    assert!(status.success(), "chown the PostgreSQL folder");
                }
                as_postgres(
                    &Path::new(POSTGRES_BIN).join("initdb"),
                    &["-D", data.to_str().unwrap(), "-U", POSTGRES_USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
                )
                .stdout(Stdio::null())
                .status()
            }
            Kind::Mariadb => {
                let mut command = Command::new(which("mariadb-install-db").expect("mariadb-install-db"));
                command.args(["--no-defaults", "--skip-test-db", "--auth-root-authentication-method=normal"]);
                command.arg(format!("--datadir={}", data.display()));
                if running_as_root() {
                    command.arg("--user=root");
                }
                // Its own temp folder: bootstraps running side by side in a
                // shared /tmp delete each other's temporary tables.
                command.env("TMPDIR", self.dir.path());
                command.stdout(Stdio::null()).status()
            }
        };
        assert!(status.expect("run the database's init").success(), "{:?} init failed", self.kind);
    }

    /// Start the server process (again, after [`stop`](Self::stop)) and
    /// wait until it accepts connections.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let data = self.data();
        let port = self.port.to_string();
        let socket_dir = self.dir.path().to_str().unwrap().to_owned();
        let child = match self.kind {
            Kind::Postgres => as_postgres(
                &Path::new(POSTGRES_BIN).join("postgres"),
                &["-D", data.to_str().unwrap(), "-p", &port, "-k", &socket_dir, "-c", "listen_addresses=127.0.0.1"],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn(),
            Kind::Mariadb => {
                let mut command = Command::new(which("mariadbd").expect("mariadbd"));
                command.arg("--no-defaults");
                command.arg(format!("--datadir={}", data.display()));
                command.arg(format!("--socket={}/mariadb.sock", socket_dir));
                command.arg(format!("--pid-file={}/mariadb.pid", socket_dir));
                command.arg(format!("--tmpdir={}", socket_dir));
                command.args([&format!("--port={port}"), "--bind-address=127.0.0.1", "--skip-grant-tables", "--skip-log-bin"]);
                command.args(["--innodb-buffer-pool-size=32M", "--character-set-server=utf8mb4"]);
                if running_as_root() {
                    command.arg("--user=root");
                }
                command.stdout(Stdio::null()).stderr(Stdio::null()).spawn()
            }
        };
        self.child = Some(child.expect("start the database server"));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "{:?} did not listen within a minute", self.kind);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the server cleanly (its data stays), as an outage.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        match self.kind {
            Kind::Postgres => {
                let data = self.data();
                let _ = as_postgres(&Path::new(POSTGRES_BIN).join("pg_ctl"), &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"])
                    .stdout(Stdio::null())
                    .status();
            }
            Kind::Mariadb => {
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            }
        }
        let started = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run one statement with the server's own client (MariaDB set-up).
    fn mariadb_sql(&self, sql: &str) {
        let status = Command::new(which("mariadb").expect("mariadb client"))
            .args(["--no-defaults", "-h", "127.0.0.1", "-P", &self.port.to_string(), "-u", "root", "-e", sql])
            .status()
            .expect("run the mariadb client");
        assert!(status.success(), "{sql} failed");
    }
}

impl Drop for DbServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where `program` is on the `PATH` (or in `/usr/sbin`, where Debian puts
/// server daemons).
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]).map(|d| d.join(program)).find(|p| p.is_file())
}

/// Where a storage test's database is: a SQLite file in a folder of its
/// own, or a private server.
pub struct Store {
    pub url: String,
    pub server: Option<DbServer>,
    _dir: tempfile::TempDir,
}

impl Store {
    /// SQLite for `None`; `None` when that server is not installed (outside CI).
    pub fn new(kind: Option<Kind>) -> Option<Store> {
        let dir = tempfile::tempdir().unwrap();
        match kind {
            None => Some(Store { url: format!("sqlite://{}", dir.path().join("history.db").display()), server: None, _dir: dir }),
            Some(kind) => {
                let server = DbServer::start(kind)?;
                Some(Store { url: server.url.clone(), server: Some(server), _dir: dir })
            }
        }
    }

    /// Point a host's storage here.
    pub fn configure(&self, config: &mut switchyard::config::Config) {
        config.storage.url = Some(self.url.clone());
    }

    /// The database, opened by the test itself.
    pub async fn open(&self) -> switchyard::store::db::Database {
        switchyard::store::db::Database::open(&self.url, 2, Duration::from_secs(10)).await.expect("the test opens the database")
    }
}

/// One `#[tokio::test]` per backend for each named `async fn(Store)` in
/// scope: modules `sqlite`, `postgres` and `mariadb`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $name() { if let Some(s) = $crate::databases::Store::new(None) { super::$name(s).await } } )* }
        mod postgres { $( #[tokio::test] async fn $name() { if let Some(s) = $crate::databases::Store::new(Some($crate::databases::Kind::Postgres)) { super::$name(s).await } } )* }
        mod mariadb { $( #[tokio::test] async fn $name() { if let Some(s) = $crate::databases::Store::new(Some($crate::databases::Kind::Mariadb)) { super::$name(s).await } } )* }
    };
}
