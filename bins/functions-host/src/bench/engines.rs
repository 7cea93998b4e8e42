//! The engines a bench runs a function in, each in a process of its own: functions-host (this
//! binary's `serve`), and for comparison workerd and `deno serve` (JavaScript), and Node booting
//! the .NET runtime (C#), found on the PATH or given as paths.

use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use anyhow::bail;

use super::load;

/// Which engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    FunctionsHost,
    Workerd,
    Deno,
    /// Node, booting the .NET runtime with `dotnet.create()` for a C# function.
    NodeDotnet,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::FunctionsHost => "functions-host",
            Kind::Workerd => "workerd",
            Kind::Deno => "deno serve",
            Kind::NodeDotnet => "node (dotnet.create)",
        }
    }
}

/// An engine and the program that runs it.
#[derive(Clone, Debug)]
pub struct Engine {
    pub kind: Kind,
    pub program: PathBuf,
    /// Its version, as it reports it.
    pub version: String,
}

impl Engine {
    /// This very binary.
    pub fn functions_host() -> anyhow::Result<Self> {
        Ok(Self {
            kind: Kind::FunctionsHost,
            program: std::env::current_exe()?,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }

    /// What `--vs` names: `workerd`, `deno` or `node` (found on the PATH), or a path to one.
    pub fn named(name: &str) -> anyhow::Result<Self> {
        let file = Path::new(name)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(name);
        let kind = if file.contains("workerd") {
            Kind::Workerd
        } else if file.contains("deno") {
            Kind::Deno
        } else if file.contains("node") {
            Kind::NodeDotnet
        } else {
            bail!(
                "--vs {name}: not workerd, deno or node (name one, or give the path of its program)"
            );
        };
        let program = if name.contains('/') {
            PathBuf::from(name)
        } else {
            which(name).with_context(|| {
                format!(
                    "--vs {name}: no {name} on the PATH (install it with `npm install -g \
                     {name}`, or give its path)"
                )
            })?
        };
        let version = std::process::Command::new(&program)
            .arg("--version")
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        let version = String::from_utf8_lossy(&version.stdout);
        // The first line, without what follows the version (Deno adds its build's details).
        let first = version.lines().next().unwrap_or("");
        let version = first.split(" (").next().unwrap_or(first).trim().to_owned();
        Ok(Self {
            kind,
            program,
            version,
        })
    }

    /// Starts the engine serving `function`, waits until it answers, and deploys it (on
    /// functions-host).
    pub async fn start(&self, function: &Function) -> anyhow::Result<Running> {
        let dir = tempfile::tempdir()?;
        let (child, base) = match self.kind {
            Kind::FunctionsHost => self.start_functions_host(dir.path(), function)?,
            Kind::Workerd => {
                let port = free_port()?;
                let module = dir.path().join("worker.js");
                std::fs::write(&module, &function.source)?;
                let config = dir.path().join("config.capnp");
                std::fs::write(&config, workerd_config(port))?;
                let child = engine_command(&self.program)
                    .arg("serve")
                    .arg(&config)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .with_context(|| format!("starting {}", self.program.display()))?;
                (child, format!("http://127.0.0.1:{port}"))
            }
            Kind::NodeDotnet => self.start_node_dotnet(dir.path(), function)?,
            Kind::Deno => {
                let port = free_port()?;
                let module = dir.path().join("main.js");
                std::fs::write(&module, &function.source)?;
                let child = engine_command(&self.program)
                    .args(["serve", "--quiet", "--host", "127.0.0.1", "--port"])
                    .arg(port.to_string())
                    .arg(&module)
                    .env("DENO_NO_UPDATE_CHECK", "1")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .with_context(|| format!("starting {}", self.program.display()))?;
                (child, format!("http://127.0.0.1:{port}"))
            }
        };
        let mut running = Running {
            child,
            base,
            path: "/".to_owned(),
            _dir: dir,
        };
        if self.kind == Kind::FunctionsHost {
            running.path = format!("/fn/{}/", function.name);
            let client = functions_host_client::Client::new(&running.base, None);
            let mut deploys = function.before.clone();
            deploys.push((function.name.clone(), function.manifest.clone()));
            tokio::task::spawn_blocking(move || {
                for (name, manifest) in deploys {
                    client
                        .deploy_manifest(&name, &manifest)
                        .with_context(|| format!("deploying {name}"))?;
                }
                anyhow::Ok(())
            })
            .await??;
        }
        let ready = load::Target::new(&running.url(), function.body.as_deref())?;
        load::first_answer(&ready, Duration::from_secs(60))
            .await
            .with_context(|| format!("{} never answered", self.kind.name()))?;
        Ok(running)
    }

    /// `serve` on a free port, its data in `dir`.
    fn start_functions_host(
        &self,
        dir: &Path,
        function: &Function,
    ) -> anyhow::Result<(Child, String)> {
        let mut command = engine_command(&self.program);
        if let Some(pyodide) = &function.pyodide {
            command.env(functions_host::LanguageRuntime::Pyodide.variable(), pyodide);
        }
        if let Some(dotnet) = &function.dotnet {
            command.env(functions_host::LanguageRuntime::Dotnet.variable(), dotnet);
        }
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir)
            .env_remove("FUNCTIONS_HOST_API_KEYS")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("no stdout")?;
        let read = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let base = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .map(str::to_owned);
        match (read, base) {
            (Ok(_), Some(base)) => Ok((child, base)),
            (read, _) => {
                let _ = child.kill();
                let _ = child.wait();
                read?;
                bail!("functions-host serve did not start: it printed {line:?}")
            }
        }
    }
}

impl Engine {
    /// Node serving `function`, a C# function, from the .NET runtime it boots (see
    /// `node_dotnet.mjs`).
    fn start_node_dotnet(
        &self,
        dir: &Path,
        function: &Function,
    ) -> anyhow::Result<(Child, String)> {
        use base64::Engine as _;
        let runtime = function
            .dotnet
            .as_ref()
            .context("node runs C# functions only")?;
        let mut assemblies = Vec::new();
        let mut own = None;
        if let Some(files) = function.manifest["files"].as_object() {
            for (name, content) in files.iter().filter(|(name, _)| name.ends_with(".dll")) {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(content.as_str().unwrap_or_default())?;
                let path = dir.join(name);
                std::fs::write(&path, bytes)?;
                assemblies.push(path.display().to_string());
                if !name.starts_with(functions_runtime::DISPATCHER_ASSEMBLY) {
                    own = name.strip_suffix(".dll").map(str::to_owned);
                }
            }
        }
        let own = own.context("the function has no assembly of its own")?;
        let entry = function.manifest["entry"].as_str().unwrap_or_default();
        let script = dir.join("node_dotnet.mjs");
        std::fs::write(&script, include_str!("node_dotnet.mjs"))?;
        let port = free_port()?;
        let child = engine_command(&self.program)
            .arg(&script)
            .env("DOTNET_DIR", runtime)
            .env("PORT", port.to_string())
            .env("ASSEMBLIES", assemblies.join(","))
            .env("ENTRY", format!("{own}|{entry}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        Ok((child, format!("http://127.0.0.1:{port}")))
    }
}

/// A function as each engine takes it.
#[derive(Clone, Debug)]
pub struct Function {
    pub name: String,
    /// An ES module with a `fetch` handler (workerd's and Deno's shape; functions-host's too).
    pub source: String,
    /// What functions-host deploys (the module, and its isolation, limits, bindings).
    pub manifest: serde_json::Value,
    /// Functions deployed before it on functions-host (those its bindings reach): name and
    /// manifest.
    pub before: Vec<(String, serde_json::Value)>,
    /// The JSON body each request sends (none: a `GET`).
    pub body: Option<String>,
    /// Pyodide's files, for a Python function.
    pub pyodide: Option<PathBuf>,
    /// The .NET runtime's files, for a C# function.
    pub dotnet: Option<PathBuf>,
}

/// An engine serving a function, stopped when dropped.
pub struct Running {
    child: Child,
    base: String,
    path: String,
    _dir: tempfile::TempDir,
}

impl Running {
    /// The function's URL.
    pub fn url(&self) -> String {
        format!("{}{}", self.base, self.path)
    }

    /// The URL of another function deployed on this functions-host.
    pub fn url_of(&self, name: &str) -> String {
        format!("{}/fn/{name}/", self.base)
    }

    /// Resident memory of the engine's processes (it and every process it started), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        tree_rss_bytes(self.child.id())
    }

    /// The engine's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Its children (the programs npm's wrappers start) go too.
        for pid in descendants(self.child.id()) {
            // SAFETY: sending a signal has no memory effects.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command for an engine's process, which dies with the bench (even when the bench is
/// interrupted, and its own cleanup does not run).
fn engine_command(program: &Path) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(program);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
}

/// workerd's configuration: one worker, `worker.js` beside it, on `port`.
fn workerd_config(port: u16) -> String {
    format!(
        r#"using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .main) ],
  sockets = [ ( name = "http", address = "127.0.0.1:{port}", http = (), service = "main" ) ],
);
const main :Workerd.Worker = (
  modules = [ (name = "worker", esModule = embed "worker.js") ],
  compatibilityDate = "2024-09-01",
);
"#
    )
}

/// A port nobody listens on now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `program` on the PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// `pid` and every process under it.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The parent is the second field after the command, which is in parentheses.
            let after = &stat[stat.rfind(')')? + 2..];
            let parent: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((child, parent))
        })
        .collect();
    let mut found = vec![pid];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            (parents.iter())
                .filter(|(_, p)| *p == parent)
                .map(|(child, _)| *child),
        );
        index += 1;
    }
    found
}

/// Resident memory of `pid` and its descendants, in bytes.
pub fn tree_rss_bytes(pid: u32) -> u64 {
    descendants(pid)
        .into_iter()
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .sum()
}
