//! Throw-away PostgreSQL servers for tests, from the machine's PostgreSQL installation (Debian's
//! `postgresql` package, which `tests/setup.sh` installs): `initdb` into a temporary directory,
//! `postgres` on a free loopback port, trusted local connections, gone when dropped.
//!
//! [`Cluster::start`] gives a test a server of its own (one it may stop and start again);
//! [`database`] gives it a fresh database on one server shared by the whole test process.

use std::net::TcpListener;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A PostgreSQL server of its own: a data directory and a `postgres` process.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    server: Mutex<Option<Child>>,
    /// Whether the server syncs its writes to disk (off for tests: a throw-away server need
    /// not survive a power cut).
    durable: bool,
}

/// The directory of the PostgreSQL programs: `FUNCTIONS_HOST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian's layout), else the one `pg_config --bindir` names.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FUNCTIONS_HOST_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let output = Command::new("pg_config").arg("--bindir").output();
    match output {
        Ok(output) if output.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
        _ => panic!(
            "PostgreSQL is not installed: the tests need its server programs (Debian: \
             `apt-get install postgresql`; tests/setup.sh installs it), or FUNCTIONS_HOST_PG_BIN \
             naming their directory"
        ),
    }
}

/// The user and group the server runs as: the `postgres` account when the tests run as root
/// (PostgreSQL refuses to run as root), else the tests' own.
fn server_account() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").expect("no NUL");
    // SAFETY: a valid C string; the result is read at once, before any other getpwnam call.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !entry.is_null(),
        "the tests run as root, and PostgreSQL refuses to: they run it as the `postgres` \
         account, which does not exist (Debian's postgresql package creates it)"
    );
    // SAFETY: checked non-null above.
    let entry = unsafe { &*entry };
    Some((entry.pw_uid, entry.pw_gid))
}

/// A command running `program` of the PostgreSQL installation as the server's account, killed
/// if the thread that starts it ends.
fn pg_command(bin: &Path, program: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(bin.join(program));
    if let Some((uid, gid)) = server_account() {
        command.uid(uid).gid(gid);
    }
    // SAFETY: prctl is async-signal-safe; it runs in the child after the account change
    // (which would clear it), before exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Cluster {
    /// Creates a cluster in a new temporary directory and starts its server, which does not
    /// sync its writes to disk. The server is killed when the cluster is dropped, or when the
    /// thread that started it ends.
    pub fn start() -> Self {
        Self::create(false)
    }

    /// Like [`Cluster::start`], the server syncing its writes to disk as a production one does
    /// (for benchmarks).
    pub fn start_durable() -> Self {
        Self::create(true)
    }

    fn create(durable: bool) -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("functions-host-pg-")
            .tempdir()
            .expect("a temporary directory");
        if let Some((uid, gid)) = server_account() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("the data directory given to the postgres account");
        }
        let output = pg_command(&bin, "initdb")
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(
            output.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self {
            bin,
            dir,
            port: free_port(),
            server: Mutex::new(None),
            durable,
        };
        cluster.start_server();
        cluster
    }

    /// The port the server listens on (loopback).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a new, empty database; its address.
    pub fn create_database(&self) -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let output = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg(&name)
            .output()
            .expect("createdb runs");
        assert!(
            output.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.url(&name)
    }

    /// Starts the server (again, after [`Cluster::stop`]) and waits until it accepts
    /// connections.
    pub fn start_server(&self) {
        let mut server = self.server.lock().unwrap_or_else(|p| p.into_inner());
        assert!(server.is_none(), "the server is running already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("the server's log file");
        let child = pg_command(&self.bin, "postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "max_connections=300"])
            .args(match self.durable {
                true => ["-c", "fsync=on"],
                false => ["-c", "fsync=off"],
            })
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file again"))
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        *server = Some(child);
        drop(server);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "postgres exited ({status}) before it was ready: {}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "postgres was not ready within {START_TIMEOUT:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's exit status, if it has exited.
    fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut server = self.server.lock().unwrap_or_else(|p| p.into_inner());
        server.as_mut()?.try_wait().ok().flatten()
    }

    /// Stops the server at once (SIGKILL: as a crash or a lost machine would), keeping its data.
    pub fn stop(&self) {
        let child = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
            // Its backends notice and exit; wait for the port to be free for a restart.
            let deadline = Instant::now() + START_TIMEOUT;
            while TcpListener::bind(("127.0.0.1", self.port)).is_err() && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            // A server killed this way leaves its shared memory lock behind until its last
            // backend is gone; postgres itself checks that on start.
        }
    }

    /// What the server has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The server [`database`] makes databases on.
static SHARED: OnceLock<Cluster> = OnceLock::new();

/// At the process's exit: stops the shared server and removes its directory.
extern "C" fn remove_shared() {
    if let Some(cluster) = SHARED.get() {
        cluster.stop();
        let _ = std::fs::remove_dir_all(cluster.dir.path());
    }
}

/// A new, empty database on a server shared by every test of this process (started by the
/// first to ask, on a thread that lives as long as the process, and removed at its exit).
pub fn database() -> String {
    let cluster = SHARED.get_or_init(|| {
        let (started, cluster) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            started
                .send(Cluster::start())
                .expect("the first caller waits");
            // The server dies with this thread: it lives as long as the process.
            loop {
                std::thread::park();
            }
        });
        let cluster = cluster.recv().expect("the shared server started");
        // SAFETY: registers a function without arguments that only touches `SHARED`.
        unsafe { libc::atexit(remove_shared) };
        cluster
    });
    cluster.create_database()
}
