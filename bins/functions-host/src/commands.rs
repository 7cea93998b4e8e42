//! The CLI's commands: each talks to a server through [`Client`], except `run`.

use std::collections::BTreeMap;
use std::io::Read;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use anyhow::bail;
use serde_json::json;

use crate::toolchain;
use functions_host_client::Client;

/// How often `logs --follow` asks for new lines.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

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
];

/// A function's source files read from `path`: the file itself, or every module file (`.js`,
/// `.mjs`, `.jsx`, `.ts`, `.mts`, `.tsx`, `.json`) under the directory, skipping hidden entries
/// and `node_modules`. Returns the entry's path and the files by their path relative to `path`.
/// A `.wasm` file as a manifest carries it: its name, and its bytes in base64.
fn wasm_file(name: &str, bytes: &[u8]) -> (String, BTreeMap<String, String>) {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    (
        name.to_owned(),
        BTreeMap::from([(name.to_owned(), encoded)]),
    )
}

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
        let files = BTreeMap::from([(name.clone(), read(path)?)]);
        return Ok((entry.map_or(name, str::to_owned), files));
    }
    let mut files = BTreeMap::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for item in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let item = item?.path();
            let file_name = item.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if file_name.starts_with('.') || file_name == "node_modules" {
                continue;
            }
            if item.is_dir() {
                pending.push(item);
            } else if functions_runtime::SourceLanguage::of_path(file_name).is_some() {
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
    /// The entry module of a directory (default: index.ts, index.js, main.ts, ...).
    #[arg(long)]
    entry: Option<String>,
    /// Environment variable for the function, `KEY=VALUE`; repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// A host (`host` or `host:port`) the function's `fetch` may reach; repeatable.
    #[arg(long = "allow-net", value_name = "HOST")]
    allow_net: Vec<String>,
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

/// `deploy PATH`: sends a manifest with the files, env, permissions and isolation.
pub fn deploy(client: &Client, args: &DeployArgs) -> anyhow::Result<()> {
    let guest = toolchain::guest_source(&args.path, args.lang.as_deref());
    let wasm = guest.is_some()
        || args.lang.as_deref() == Some("wasm")
        || args.path.extension().is_some_and(|ext| ext == "wasm");
    let mut executor = args.executor.clone();
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
        let bytes = std::fs::read(&args.path)
            .with_context(|| format!("reading {}", args.path.display()))?;
        let name = args
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("main.wasm");
        wasm_file(name, &bytes)
    } else {
        source_files(&args.path, args.entry.as_deref())?
    };
    let name = match &args.name {
        Some(name) => name.clone(),
        None => default_name(&args.path)?,
    };
    let mut vars = BTreeMap::new();
    for pair in &args.env {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--env {pair:?} is not KEY=VALUE"))?;
        vars.insert(key.to_owned(), value.to_owned());
    }
    let mut manifest =
        json!({ "entry": entry, "files": files, "env": vars, "allow_net": args.allow_net });
    if let Some(lang) = &args.lang {
        manifest["language"] = lang.as_str().into();
    }
    if let Some(isolation) = &args.isolation {
        manifest["isolation"] = isolation.as_str().into();
    }
    if wasm {
        manifest["language"] = "wasm".into();
    }
    if let Some(executor) = executor {
        manifest["executor"] = executor.into();
    }
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
    manifest["limits"] = limits.into();
    if args.private {
        manifest["public"] = false.into();
    }
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

/// `logs NAME [--follow]`: `timestamp level message` lines, oldest first.
pub fn logs(client: &Client, name: &str, follow: bool) -> anyhow::Result<()> {
    let mut after = 0;
    loop {
        let lines = client.logs(name, after, 10_000)?;
        let mut stdout = std::io::stdout().lock();
        for line in &lines {
            after = line["id"].as_i64().unwrap_or(after);
            let level = line["level"].as_str().unwrap_or("").to_uppercase();
            writeln!(
                stdout,
                "{} {:<5} {}",
                line["timestamp"].as_str().unwrap_or(""),
                level,
                line["message"].as_str().unwrap_or("")
            )?;
        }
        drop(stdout);
        if !follow {
            return Ok(());
        }
        if lines.is_empty() {
            std::thread::sleep(FOLLOW_INTERVAL);
        }
    }
}

/// `serve`: opens the host, binds, and serves until Ctrl-C.
pub async fn serve(
    host: functions_host::HostBuilder,
    listen: std::net::SocketAddr,
    public_url: Option<String>,
    data: &Path,
) -> anyhow::Result<()> {
    let host = host.open().await?;
    let keys = host.api_keys().count();
    let server = functions_host_http::Server::bind(host, listen, public_url)?;
    if keys > 0 {
        eprintln!("functions-host: /api requires one of {keys} API keys");
    }
    // Tests and scripts wait for this line: the server accepts connections from here on.
    println!(
        "functions-host listening on http://{} (data in {})",
        server.local_addr()?,
        data.display()
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

/// How long a stopping server lets requests and calls under way finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// `run PATH [JSON]`: checks and runs the function once in-process; console output goes to stderr.
pub fn run(path: &Path, payload: Option<&str>) -> anyhow::Result<()> {
    let name = default_name(path)?;
    functions_host::validate_name(&name)?;
    let body = payload_bytes(payload)?;
    let engine = functions_runtime::Engine::new(functions_runtime::EngineConfig {
        workers: 1,
        // One invocation, then the process ends: nothing to prepare for.
        prepared_per_worker: 0,
        ..Default::default()
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut settings = functions_runtime::Settings::default();
    let guest = toolchain::guest_source(path, None);
    let function = if guest.is_some() || path.extension().is_some_and(|ext| ext == "wasm") {
        let binary = match guest {
            Some((language, source)) => {
                let built = toolchain::build(language, &source)?;
                if let Some(executor) = built.executor.and_then(functions_runtime::Executor::parse)
                {
                    settings.executor = executor;
                }
                built.wasm
            }
            None => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        };
        let module = runtime
            .block_on(engine.compile_wasm(binary))
            .map_err(|err| anyhow::anyhow!("{}", err.message))?;
        functions_runtime::Function::wasm(&name, 1, module, settings)
    } else {
        let (entry, files) = source_files(path, None)?;
        let modules = functions_runtime::compile_files(&name, &entry, &files)?;
        functions_runtime::Function::new(&name, 1, &entry, modules, settings)
    };
    let print_logs = |lines: &[functions_runtime::LogLine]| {
        for line in lines {
            eprintln!("[{}] {}", line.level.as_str(), line.message);
        }
    };
    let status = runtime.block_on(async {
        engine
            .check(&function)
            .await
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        let mut request = if body.is_empty() {
            functions_runtime::Request::get("http://localhost/")
        } else {
            functions_runtime::Request::json(body)
        };
        request
            .headers
            .push(("x-forwarded-prefix".into(), String::new()));
        let outcome = engine.invoke(&function, request).await;
        print_logs(&outcome.logs);
        let response = outcome.result.map_err(|err| match err {
            functions_runtime::InvokeError::Threw { stack, message } if !stack.is_empty() => {
                anyhow::anyhow!("{message}\n{stack}")
            }
            other => anyhow::anyhow!("{other}"),
        })?;
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
        if let Some(after_response) = outcome.after_response {
            let finished = after_response.await;
            print_logs(&finished.logs);
            if let Some(err) = finished.error {
                bail!("after its response, the function failed: {err}");
            }
        }
        anyhow::Ok(response.status)
    })?;
    if !(200..300).contains(&status) {
        bail!("the function answered status {status}");
    }
    Ok(())
}
