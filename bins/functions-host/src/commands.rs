//! The CLI's commands: each talks to a server through [`Client`], except `run`.

use std::collections::BTreeMap;
use std::io::Read;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use anyhow::bail;

use crate::toolchain;
use functions_host_client::Client;

/// How long one request of `logs --follow` waits for a new line before it asks again.
const FOLLOW_WAIT: Duration = Duration::from_secs(30);

fn payload_bytes(payload: Option<&str>) -> anyhow::Result<Vec<u8>> {
    match payload {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            Ok(buf)
        }
        Some(text) => Ok(text.as_bytes().to_vec()),
    }
}

/// File names tried, in order, as the entry of a function deployed from a directory.
const ENTRY_CANDIDATES: &[&str] = &[
    "index.ts",
    "index.js",
    "index.mjs",
    "index.tsx",
    "main.ts",
    "main.js",
    "mod.ts",
    "main.py",
];

/// A `.wasm` file as a manifest carries it: its name, and its bytes in base64.
fn wasm_file(name: &str, bytes: &[u8]) -> (String, BTreeMap<String, String>) {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    (
        name.to_owned(),
        BTreeMap::from([(name.to_owned(), encoded)]),
    )
}

/// A function's source files read from `path`: the file itself (with the `requirements.txt`
/// beside a `.py` file), or every module file (`.js`, `.mjs`, `.jsx`, `.ts`, `.mts`, `.tsx`,
/// `.json`, `.py`, and a Python `requirements.txt`) under the directory, skipping hidden
/// entries, `node_modules` and `__pycache__`. Returns the entry's path and the files by their
/// path relative to `path`.
pub fn source_files(
    path: &Path,
    entry: Option<&str>,
) -> anyhow::Result<(String, BTreeMap<String, String>)> {
    let read = |file: &Path| {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    };
    if !path.is_dir() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no file name", path.display()))?
            .to_owned();
        let mut files = BTreeMap::from([(name.clone(), read(path)?)]);
        // A Python function's requirements.txt beside it goes with it.
        let requirements = path.with_file_name("requirements.txt");
        if name.ends_with(".py") && requirements.is_file() {
            files.insert("requirements.txt".to_owned(), read(&requirements)?);
        }
        return Ok((entry.map_or(name, str::to_owned), files));
    }
    let mut files = BTreeMap::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for item in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let item = item?.path();
            let file_name = item.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if file_name.starts_with('.') || matches!(file_name, "node_modules" | "__pycache__") {
                continue;
            }
            if item.is_dir() {
                pending.push(item);
            } else if functions_runtime::SourceLanguage::of_path(file_name).is_some()
                || file_name.ends_with(".py")
                || file_name == "requirements.txt"
            {
                let relative = item.strip_prefix(path).unwrap_or(&item);
                let relative = relative
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                files.insert(relative, read(&item)?);
            }
        }
    }
    let entry = match entry {
        Some(entry) => entry.to_owned(),
        None => ENTRY_CANDIDATES
            .iter()
            .find(|candidate| files.contains_key(**candidate))
            .map(|entry| entry.to_string())
            .with_context(|| {
                format!(
                    "{} has none of {}: name the entry with --entry",
                    path.display(),
                    ENTRY_CANDIDATES.join(", ")
                )
            })?,
    };
    // A Python function (its entry a .py file, or a function of one) takes its Python files and
    // data; any other takes its modules: neither the other's.
    let is_python_file = |path: &str| path.ends_with(".py") || path == "requirements.txt";
    let python = entry.ends_with(".py")
        || entry.contains(".py:")
        || (!entry.contains('.') && files.keys().any(|path| path.ends_with(".py")));
    files.retain(|path, _| {
        let script = functions_runtime::SourceLanguage::of_path(path)
            .is_some_and(|language| language != functions_runtime::SourceLanguage::Json);
        if python {
            !script
        } else {
            !is_python_file(path)
        }
    });
    Ok((entry, files))
}

/// The default function name for `path`: its file or directory name up to the first dot.
fn default_name(path: &Path) -> anyhow::Result<String> {
    let path = std::path::absolute(path)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no name: use --name", path.display()))?;
    Ok(name.split('.').next().unwrap_or(name).to_owned())
}

/// `deploy`'s arguments.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// The function's entry module, or a directory of modules.
    path: std::path::PathBuf,
    /// Function name (default: the file or directory name without its extension).
    #[arg(long)]
    name: Option<String>,
    /// Language (default: from the entry's extension).
    #[arg(long)]
    lang: Option<String>,
    /// The entry module of a directory (default: index.ts, index.js, main.ts, ...); Python:
    /// the function to call (`hello`, `main.py:hello`); C#: the method (`Class.Method`).
    #[arg(long)]
    entry: Option<String>,
    /// Environment variable for the function, `KEY=VALUE`; repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// A host (`host` or `host:port`) the function's `fetch` may reach; repeatable.
    #[arg(long = "allow-net", value_name = "HOST")]
    allow_net: Vec<String>,
    /// A function this one may call, `NAME=FUNCTION`: the handler's `env.NAME` reaches the
    /// deployed function FUNCTION; repeatable.
    #[arg(long = "bind", value_name = "NAME=FUNCTION")]
    bind: Vec<String>,
    /// `invocation` (a fresh isolate per call, the default) or `function` (one warm isolate).
    #[arg(long)]
    isolation: Option<String>,
    /// WebAssembly: `command` (stdout is the body, the default) or `wagi` (stdout starts with
    /// CGI headers).
    #[arg(long)]
    executor: Option<String>,
    /// A limit, `KEY=VALUE` with KEY one of cpu_ms, wall_clock_ms, memory_mb or concurrency;
    /// repeatable.
    #[arg(long = "limit", value_name = "KEY=VALUE")]
    limits: Vec<String>,
    /// Invoking it at /fn/NAME needs an API key (its call address needs none).
    #[arg(long)]
    private: bool,
}

/// The code at `path` as a manifest: a guest's source built to WebAssembly with its toolchain,
/// a `.wasm` file, or JavaScript/TypeScript modules (a file, or a directory of them).
fn code_manifest(
    path: &Path,
    lang: Option<&str>,
    entry: Option<&str>,
    executor: Option<&str>,
) -> anyhow::Result<functions_host::Manifest> {
    let guest = toolchain::guest_source(path, lang);
    // A directory is C# when it has .cs files and nothing else to start from: no guest
    // project, module or Python file.
    let module_entry = |file: &str| {
        functions_runtime::SourceLanguage::of_path(file).is_some() || file.ends_with(".py")
    };
    let other_entry = guest.is_some()
        || match entry {
            Some(entry) => module_entry(entry.split(':').next().unwrap_or(entry)),
            None => (ENTRY_CANDIDATES.iter()).any(|candidate| path.join(candidate).is_file()),
        };
    if crate::csharp::is_csharp(path, lang, other_entry) {
        let (files, compiler) = crate::csharp::files(path)?;
        if let Some(compiler) = compiler {
            eprintln!("Built {} with {compiler}", path.display());
        }
        return Ok(functions_host::Manifest {
            language: Some("csharp".to_owned()),
            entry: entry.map(str::to_owned),
            files,
            executor: executor.map(str::to_owned),
            ..functions_host::Manifest::default()
        });
    }
    let wasm = guest.is_some()
        || lang == Some("wasm")
        || path.extension().is_some_and(|ext| ext == "wasm");
    let mut executor = executor.map(str::to_owned);
    let (entry, files) = if let Some((language, source)) = guest {
        let built = toolchain::build(language, &source)?;
        eprintln!(
            "Built {} with {} ({} bytes)",
            source.display(),
            built.toolchain,
            built.wasm.len()
        );
        executor = executor.or(built.executor.map(str::to_owned));
        let stem = source
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("main");
        wasm_file(&format!("{stem}.wasm"), &built.wasm)
    } else if wasm {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("main.wasm");
        wasm_file(name, &bytes)
    } else {
        source_files(path, entry)?
    };
    Ok(functions_host::Manifest {
        language: if wasm {
            Some("wasm".to_owned())
        } else {
            lang.map(str::to_owned)
        },
        entry: Some(entry),
        files,
        executor,
        ..functions_host::Manifest::default()
    })
}

/// A `--bind NAME=FUNCTION` flag's binding name and function name (the server checks both).
fn binding_of(pair: &str) -> anyhow::Result<(&str, &str)> {
    match pair.split_once('=') {
        Some((binding, function)) if !binding.is_empty() && !function.is_empty() => {
            Ok((binding, function))
        }
        _ => bail!(
            "--bind {pair:?} is not NAME=FUNCTION (the binding's name in env, then the function it calls)"
        ),
    }
}

impl DeployArgs {
    /// The function's name and its manifest (as the HTTP API takes it): the code at the path
    /// (a guest's source built with its toolchain first), with the env, bindings, permissions,
    /// limits and isolation of the flags.
    pub fn manifest(&self) -> anyhow::Result<(String, serde_json::Value)> {
        let args = self;
        let mut manifest = code_manifest(
            &args.path,
            args.lang.as_deref(),
            args.entry.as_deref(),
            args.executor.as_deref(),
        )?;
        let name = match &args.name {
            Some(name) => name.clone(),
            None => default_name(&args.path)?,
        };
        for pair in &args.env {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--env {pair:?} is not KEY=VALUE"))?;
            manifest.env.insert(key.to_owned(), value.to_owned());
        }
        manifest.allow_net = args.allow_net.clone();
        for pair in &args.bind {
            let (binding, function) = binding_of(pair)?;
            manifest.bindings.insert(
                binding.to_owned(),
                serde_json::json!({ "function": function }),
            );
        }
        manifest.isolation = args.isolation.clone();
        let mut limits = serde_json::Map::new();
        for pair in &args.limits {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--limit {pair:?} is not KEY=VALUE"))?;
            let value: u64 = value
                .parse()
                .with_context(|| format!("--limit {pair:?}: the value is not a whole number"))?;
            limits.insert(key.to_owned(), value.into());
        }
        if args.private {
            manifest.public = Some(false);
        }
        // Limits go as the user wrote them, so that the server names an unknown one.
        let mut manifest = serde_json::to_value(&manifest)?;
        manifest["limits"] = limits.into();
        Ok((name, manifest))
    }

    /// The function's entry module, or its directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The function at `path` as `deploy` would send it with no flags: its name and manifest.
pub fn manifest_of_path(path: &Path) -> anyhow::Result<(String, serde_json::Value)> {
    let manifest = code_manifest(path, None, None, None)?;
    Ok((default_name(path)?, serde_json::to_value(&manifest)?))
}

/// `deploy PATH`: sends a manifest with the files, env, bindings, permissions and isolation.
pub fn deploy(client: &Client, args: &DeployArgs) -> anyhow::Result<()> {
    let (name, manifest) = args.manifest()?;
    let v = client.deploy_manifest(&name, &manifest)?;
    println!(
        "Deployed {} version {} ({}): {}",
        v["name"].as_str().unwrap_or(&name),
        v["version"],
        v["language"].as_str().unwrap_or(""),
        v["url"].as_str().unwrap_or("")
    );
    println!(
        "Call address (no API key needed; keep it secret): {}",
        v["call_url"].as_str().unwrap_or("")
    );
    Ok(())
}

/// `call NAME`: queues an asynchronous call with stdin as the payload; prints its id.
pub fn call(client: &Client, name: &str) -> anyhow::Result<()> {
    let payload = payload_bytes(Some("-"))?;
    println!("{}", client.call(name, &payload)?);
    Ok(())
}

/// `get [--wait] ID`: prints a finished call's response body (a failed call fails); without
/// `--wait`, a call still pending or running fails with its state.
pub fn get(client: &Client, id: &str, wait: bool) -> anyhow::Result<()> {
    loop {
        let seconds = if wait { 60 } else { 0 };
        let reply = client.send("GET", &format!("/api/calls/{id}?wait={seconds}"), None)?;
        if reply.status == 202 {
            if wait {
                continue;
            }
            let state = reply.json()?["state"].as_str().unwrap_or("").to_owned();
            bail!("call {id} is {state}: try again later, or get --wait");
        }
        if !reply.is_success() {
            bail!(reply.error_message());
        }
        std::io::stdout().write_all(&reply.body)?;
        return Ok(());
    }
}

/// `invoke NAME [JSON|-]`: prints the response body; a non-2xx status fails.
pub fn invoke(client: &Client, name: &str, payload: Option<&str>) -> anyhow::Result<()> {
    let reply = client.invoke(name, &payload_bytes(payload)?)?;
    if !reply.is_success() {
        bail!(reply.error_message());
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&reply.body)?;
    if !reply.body.ends_with(b"\n") {
        stdout.write_all(b"\n")?;
    }
    Ok(())
}

/// `ls`: one line per function.
pub fn list(client: &Client) -> anyhow::Result<()> {
    let functions = client.list()?;
    println!(
        "{:<24} {:>7}  {:<10}  {:<24}  URL",
        "NAME", "VERSION", "LANGUAGE", "DEPLOYED"
    );
    for f in functions {
        println!(
            "{:<24} {:>7}  {:<10}  {:<24}  {}",
            f["name"].as_str().unwrap_or(""),
            f["version"],
            f["language"].as_str().unwrap_or(""),
            f["deployed_at"].as_str().unwrap_or(""),
            f["url"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// `rm NAME`
pub fn remove(client: &Client, name: &str) -> anyhow::Result<()> {
    client.delete(name)?;
    println!("Deleted {name}");
    Ok(())
}

/// `logs NAME [--follow]`: `timestamp level source message` lines, oldest first.
pub fn logs(client: &Client, name: &str, follow: bool) -> anyhow::Result<()> {
    let mut after = 0;
    loop {
        let wait = if follow { FOLLOW_WAIT } else { Duration::ZERO };
        let lines = client.logs(name, after, 10_000, wait)?;
        let mut stdout = std::io::stdout().lock();
        for line in &lines {
            after = line["id"].as_i64().unwrap_or(after);
            let field = |key: &str| line[key].as_str().unwrap_or("");
            writeln!(
                stdout,
                "{} {}",
                field("timestamp"),
                log_line(field("level"), field("source"), field("message"))
            )?;
        }
        drop(stdout);
        if !follow {
            return Ok(());
        }
    }
}

/// `serve`: opens the host, binds, and serves until Ctrl-C.
pub async fn serve(
    host: functions_host::HostBuilder,
    serving: Serving,
    kept: &str,
) -> anyhow::Result<()> {
    let exporter = match &serving.otlp_endpoint {
        Some(endpoint) => Some(functions_host_http::OtlpExporter::spawn(endpoint)?),
        None => None,
    };
    let host = match &exporter {
        Some(exporter) => host.spans(exporter.clone()),
        None => host,
    };
    let host = host.open().await?;
    if let (Some(exporter), Some(endpoint)) = (&exporter, &serving.otlp_endpoint) {
        exporter.name_node(host.node_id());
        eprintln!("functions-host: exporting spans to {endpoint}");
    }
    let keys = host.api_keys().count();
    let mut server = functions_host_http::Server::bind(host, serving.listen)?
        .public(serving.public)
        .with_limits(serving.limits);
    if let Some(url) = &serving.public_url {
        server = server.with_public_url(url);
    }
    if keys > 0 {
        eprintln!("functions-host: /api requires one of {keys} API keys");
    } else if server.local_only() {
        eprintln!(
            "functions-host: no API keys: answering this machine only (loopback host names); \
             configure keys, or pass --public"
        );
    } else {
        eprintln!(
            "functions-host: no API keys and --public: anyone who reaches the server manages it"
        );
    }
    // Tests and scripts wait for this line: the server accepts connections from here on.
    println!(
        "functions-host listening on http://{} ({kept})",
        server.local_addr()?
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("functions-host: shutting down: finishing the requests and calls under way");
    };
    match server.run(shutdown, DRAIN_TIMEOUT).await? {
        functions_host::Drained::Fully => eprintln!("functions-host: stopped"),
        functions_host::Drained::TimedOut => eprintln!(
            "functions-host: stopped after {} s with work still running",
            DRAIN_TIMEOUT.as_secs()
        ),
    }
    Ok(())
}

/// Where and how `serve` answers.
pub struct Serving {
    pub listen: std::net::SocketAddr,
    pub public_url: Option<String>,
    pub public: bool,
    pub limits: functions_host_http::ConnectionLimits,
    /// The OpenTelemetry collector spans go to, if any.
    pub otlp_endpoint: Option<String>,
}

/// `serve`'s limits on client connections (each defaults to
/// [`functions_host_http::ConnectionLimits::default`]).
#[derive(clap::Args)]
pub struct ConnectionArgs {
    /// Time a client has to send a request's head, from connecting or from the previous
    /// response; also how long an idle kept-alive connection stays open [default: 15s]
    #[arg(long, value_parser = humantime::parse_duration)]
    header_timeout: Option<Duration>,
    /// Time the server waits on a client that stopped sending a body or reading a response
    /// [default: 60s]
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Most connections open at once; more are answered 503 [default: 10000, or 3/4 of the
    /// descriptors the process may open]
    #[arg(long)]
    max_connections: Option<usize>,
    /// Requests one kept-alive connection carries before the server closes it [default: 1000]
    #[arg(long)]
    max_requests_per_connection: Option<usize>,
}

impl ConnectionArgs {
    /// The limits, defaults filled in.
    pub fn limits(&self) -> functions_host_http::ConnectionLimits {
        let defaults = functions_host_http::ConnectionLimits::default();
        functions_host_http::ConnectionLimits {
            header_timeout: self.header_timeout.unwrap_or(defaults.header_timeout),
            idle_timeout: self.idle_timeout.unwrap_or(defaults.idle_timeout),
            max_connections: self
                .max_connections
                .unwrap_or(defaults.max_connections)
                .max(1),
            max_requests_per_connection: self
                .max_requests_per_connection
                .unwrap_or(defaults.max_requests_per_connection)
                .max(1),
        }
    }
}

/// Lets the server open as many descriptors as the system allows it (the soft limit is often
/// 1,024 while the hard one is far higher), as Go and nginx do: each connection takes one.
pub fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A log line as the CLI prints it: `LEVEL source message`, the host's lines marked `host` and
/// the function's `fn`; a message's further lines are indented under it, so that nothing a
/// function prints can pass for a line of its own, let alone one of the host's.
pub fn log_line(level: &str, source: &str, message: &str) -> String {
    let source = if source == "host" { "host" } else { "fn" };
    let head = format!("{:<5} {source:<4} ", level.to_uppercase());
    let message = visible(message);
    let mut lines = message.split('\n');
    let mut text = format!("{head}{}", lines.next().unwrap_or_default());
    for more in lines {
        text.push('\n');
        text.push_str(&" ".repeat(head.len()));
        text.push_str("| ");
        text.push_str(more);
    }
    text
}

/// `message` with every control character but newlines and tabs escaped (`\r`, `\x1b`, ...):
/// a carriage return or a terminal escape sequence could otherwise redraw the line it is on.
fn visible(message: &str) -> std::borrow::Cow<'_, str> {
    if !message
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return message.into();
    }
    message
        .chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect::<String>()
        .into()
}

/// Shows the download of `what` on stderr: a line redrawn as each tenth arrives (a log line
/// per tenth when stderr is not a terminal).
pub fn download_progress(
    what: &'static str,
) -> Arc<dyn Fn(functions_host::DownloadProgress) + Send + Sync> {
    use std::io::IsTerminal;
    let shown = std::sync::Mutex::new(None::<u64>);
    let terminal = std::io::stderr().is_terminal();
    Arc::new(move |progress: functions_host::DownloadProgress| {
        let Some(total) = progress.total.filter(|total| *total > 0) else {
            return;
        };
        let tenth = progress.received * 10 / total;
        let mut shown = shown.lock().unwrap_or_else(|p| p.into_inner());
        if *shown == Some(tenth) {
            return;
        }
        *shown = Some(tenth);
        let bar: String = (0..10).map(|i| if i < tenth { '#' } else { '.' }).collect();
        let line = format!(
            "Downloading {what} [{bar}] {:.1} of {:.1} MB",
            progress.received as f64 / 1e6,
            total as f64 / 1e6
        );
        if terminal {
            let end = if tenth >= 10 { "\n" } else { "" };
            eprint!("\r{line}{end}");
        } else {
            eprintln!("{line}");
        }
    })
}

/// What a language runtime's download is shown as.
fn runtime_title(runtime: functions_host::LanguageRuntime) -> &'static str {
    match runtime {
        functions_host::LanguageRuntime::Pyodide => "Pyodide (Python for functions)",
        functions_host::LanguageRuntime::Dotnet => "the .NET runtime (C# for functions)",
    }
}

/// `builder` with Pyodide and the .NET runtime from `pyodide` and `dotnet` when given (the
/// flags), else as their environment variables say, downloaded into `data` (or the user's
/// cache) on first use with the download shown.
pub fn with_runtimes(
    builder: functions_host::HostBuilder,
    data: Option<&Path>,
    pyodide: Option<std::path::PathBuf>,
    dotnet: Option<std::path::PathBuf>,
) -> functions_host::HostBuilder {
    use functions_host::LanguageRuntime;
    let setup = |runtime: LanguageRuntime, local: Option<std::path::PathBuf>| {
        let default = match data {
            Some(data) => {
                functions_host::RuntimeSetup::from_env(runtime, data.join(runtime.dir_name()))
            }
            None => functions_host::RuntimeSetup::for_user(runtime),
        };
        functions_host::RuntimeSetup {
            local: local.or(default.local.clone()),
            progress: Some(download_progress(runtime_title(runtime))),
            ..default
        }
    };
    builder
        .python(setup(LanguageRuntime::Pyodide, pyodide))
        .dotnet(setup(LanguageRuntime::Dotnet, dotnet))
}

/// How long a stopping server lets requests and calls under way finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// `run PATH [JSON]`: deploys the function to a host of its own, in memory, and invokes it
/// once; the response body goes to stdout, the function's logs to stderr.
pub fn run(path: &Path, payload: Option<&str>) -> anyhow::Result<()> {
    let name = default_name(path)?;
    functions_host::validate_name(&name)?;
    let body = payload_bytes(payload)?;
    let manifest = code_manifest(path, None, None, None)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = runtime.block_on(async {
        let builder = functions_host::Host::builder().engine(functions_runtime::EngineConfig {
            workers: 1,
            // One invocation, then the process ends: nothing to prepare for.
            prepared_per_worker: 0,
            ..Default::default()
        });
        let host = with_runtimes(builder, None, None, None).open().await?;
        host.deploy(&name, functions_host::DeploySource::Manifest(manifest))
            .await
            .map_err(|err| anyhow::anyhow!(describe(&err)))?;
        let mut request = if body.is_empty() {
            functions_host::Request::get("http://localhost/")
        } else {
            functions_host::Request::json(body)
        };
        request
            .headers
            .push(("x-forwarded-prefix".into(), String::new()));
        let outcome = match host.invoke(&name, request).await {
            Ok(response) => write_body(response).await,
            Err(err) => Err(anyhow::anyhow!(describe(&err))),
        };
        // What runs after the response (a stream's end, `ctx.waitUntil`) ends, and every log
        // line is stored, before they are printed.
        host.shutdown(Duration::from_secs(30)).await;
        for line in host.logs(&name, 0, 10_000).await? {
            eprintln!(
                "{}",
                log_line(&line.level, line.source.as_str(), &line.message)
            );
        }
        outcome
    })?;
    if !(200..300).contains(&status) {
        bail!("the function answered status {status}");
    }
    Ok(())
}

/// An error for a person: its message, with the stack or source position it carries.
pub fn describe(err: &functions_host::Error) -> String {
    let details = err.details();
    if let Some(stack) = details
        .get("stack")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
    {
        return stack.to_owned();
    }
    match (
        details.get("file"),
        details.get("line"),
        details.get("column"),
    ) {
        (Some(file), Some(line), Some(column)) => format!(
            "{}\n    at {}:{line}:{column}",
            err.message(),
            file.as_str().unwrap_or("")
        ),
        _ => err.message().to_owned(),
    }
}

/// Writes a response's body to stdout (a stream as it comes), ending with a newline; its
/// status.
async fn write_body(response: functions_host::Response) -> anyhow::Result<u16> {
    let mut stdout = std::io::stdout();
    let mut last = b'\n';
    let mut write = |chunk: &[u8]| -> std::io::Result<()> {
        if let Some(byte) = chunk.last() {
            last = *byte;
        }
        stdout.write_all(chunk)
    };
    match response.body {
        functions_runtime::ResponseBody::Full(bytes) => write(&bytes)?,
        functions_runtime::ResponseBody::Stream(mut stream) => {
            while let Some(chunk) = stream.next().await {
                write(&chunk.map_err(|err| anyhow::anyhow!("the body failed: {err}"))?)?;
            }
        }
    }
    if last != b'\n' {
        stdout.write_all(b"\n")?;
    }
    Ok(response.status)
}
