//! The CLI's commands: each talks to a server through [`Client`], except `run`.

use std::collections::BTreeMap;
use std::io::Read;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use anyhow::bail;
use serde_json::json;

use crate::client::Client;

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

fn file_name(path: &Path) -> anyhow::Result<&str> {
    path.file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no file name", path.display()))
}

/// `deploy PATH`: sends a manifest with the file, env and isolation.
pub fn deploy(
    server: &str,
    path: &Path,
    name: Option<String>,
    lang: Option<String>,
    env: &[String],
    isolation: Option<String>,
) -> anyhow::Result<()> {
    let source =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let entry = file_name(path)?;
    let name = match name {
        Some(name) => name,
        None => entry.split('.').next().unwrap_or(entry).to_owned(),
    };
    let mut vars = BTreeMap::new();
    for pair in env {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--env {pair:?} is not KEY=VALUE"))?;
        vars.insert(key.to_owned(), value.to_owned());
    }
    let mut manifest = json!({ "entry": entry, "files": { entry: source }, "env": vars });
    if let Some(lang) = lang {
        manifest["language"] = lang.into();
    }
    if let Some(isolation) = isolation {
        manifest["isolation"] = isolation.into();
    }
    let body = serde_json::to_vec(&manifest)?;
    let reply = Client::new(server).expect(
        "PUT",
        &format!("/api/functions/{name}"),
        Some(("application/json", &body)),
    )?;
    let v = reply.json()?;
    println!(
        "Deployed {} version {} ({}): {}",
        v["name"].as_str().unwrap_or(&name),
        v["version"],
        v["language"].as_str().unwrap_or(""),
        v["url"].as_str().unwrap_or("")
    );
    Ok(())
}

/// `invoke NAME [JSON|-]`: prints the response body; a non-2xx status fails.
pub fn invoke(server: &str, name: &str, payload: Option<&str>) -> anyhow::Result<()> {
    let body = payload_bytes(payload)?;
    let body = (!body.is_empty()).then_some(("application/json", body.as_slice()));
    let reply = Client::new(server).send("POST", &format!("/fn/{name}/"), body)?;
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
pub fn list(server: &str) -> anyhow::Result<()> {
    let v = Client::new(server)
        .expect("GET", "/api/functions", None)?
        .json()?;
    let functions = v["functions"].as_array().cloned().unwrap_or_default();
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
pub fn remove(server: &str, name: &str) -> anyhow::Result<()> {
    Client::new(server).expect("DELETE", &format!("/api/functions/{name}"), None)?;
    println!("Deleted {name}");
    Ok(())
}

/// `logs NAME [--follow]`: `timestamp level message` lines, oldest first.
pub fn logs(server: &str, name: &str, follow: bool) -> anyhow::Result<()> {
    let client = Client::new(server);
    let mut after = 0;
    loop {
        let v = client
            .expect(
                "GET",
                &format!("/api/functions/{name}/logs?after={after}&limit=10000"),
                None,
            )?
            .json()?;
        let lines = v["logs"].as_array().cloned().unwrap_or_default();
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

/// `run PATH [JSON]`: checks and runs the file once in-process; console output goes to stderr.
pub fn run(path: &Path, payload: Option<&str>) -> anyhow::Result<()> {
    let source =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let entry = file_name(path)?;
    let name = entry.split('.').next().unwrap_or(entry);
    crate::deploy::validate_name(name).map_err(|err| anyhow::anyhow!(err.0))?;
    let body = payload_bytes(payload)?;
    let files = BTreeMap::from([(entry.to_owned(), source)]);
    let modules = functions_runtime::compile_files(name, entry, &files)?;
    let function = functions_runtime::Function::new(
        name,
        1,
        entry,
        modules,
        Default::default(),
        functions_runtime::Isolation::Invocation,
    );
    let engine = functions_runtime::Engine::new(functions_runtime::EngineConfig {
        workers: 1,
        ..Default::default()
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
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
        anyhow::Ok(engine.invoke(&function, request).await)
    })?;
    for line in &outcome.logs {
        eprintln!("[{}] {}", line.level.as_str(), line.message);
    }
    let response = outcome.result.map_err(|err| match err {
        functions_runtime::InvokeError::Threw { stack, message } if !stack.is_empty() => {
            anyhow::anyhow!("{message}\n{stack}")
        }
        other => anyhow::anyhow!("{other}"),
    })?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&response.body)?;
    if !response.body.ends_with(b"\n") {
        stdout.write_all(b"\n")?;
    }
    if !(200..300).contains(&response.status) {
        bail!("the function answered status {}", response.status);
    }
    Ok(())
}
