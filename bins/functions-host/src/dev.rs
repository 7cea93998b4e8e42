//! `functions-host dev PATH`: a local server with one function, deployed as `deploy` would
//! deploy it and redeployed whenever its files change (a guest rebuilt with its toolchain
//! first). Each reload is printed, with the compile error and its source line when the new code
//! does not compile (the version before it goes on serving), and so are the function's logs.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use notify::Watcher;

use crate::commands::DeployArgs;
use crate::commands::describe;
use crate::commands::log_line;
use crate::commands::with_runtimes;

/// `dev`'s arguments: `deploy`'s, and where to listen.
#[derive(clap::Args)]
pub struct DevArgs {
    #[command(flatten)]
    deploy: DeployArgs,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: std::net::SocketAddr,
    /// Open the dashboard in a browser.
    #[arg(long)]
    open: bool,
}

/// Changes that arrive this close together are one change (an editor's save is several events).
const SETTLE: Duration = Duration::from_millis(50);

/// Runs the dev server until Ctrl-C.
pub fn dev(args: DevArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: DevArgs) -> anyhow::Result<()> {
    let args = Arc::new(args);
    let host = with_runtimes(functions_host::Host::builder(), None, None, None)
        .open()
        .await?;
    let server = functions_host_http::Server::bind(host.clone(), args.listen)?;
    let base = format!("http://{}", server.local_addr()?);
    // Scripts (and the tests) wait for this line.
    println!("functions-host dev listening on {base} (dashboard: {base}/)");
    let (changes, mut changed) = tokio::sync::mpsc::unbounded_channel();
    let _watcher = watch(args.deploy.path(), changes)?;
    let mut name = None;
    let mut deployed = None;
    if let Some(reloaded) = reload(&host, &args, &base, &mut deployed).await {
        name = Some(reloaded);
    }
    if args.open {
        open_browser(&format!("{base}/"));
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    let mut serving = tokio::spawn(server.run(stop, Duration::from_secs(5)));
    if let Some(name) = &name {
        tail_logs(&host, name);
    }
    loop {
        tokio::select! {
            served = &mut serving => {
                served.context("the server failed")??;
                return Ok(());
            }
            Some(()) = changed.recv() => {
                // The rest of the same save.
                tokio::time::sleep(SETTLE).await;
                while changed.try_recv().is_ok() {}
                if let Some(reloaded) = reload(&host, &args, &base, &mut deployed).await
                    && name.is_none()
                {
                    tail_logs(&host, &reloaded);
                    name = Some(reloaded);
                }
            }
        }
    }
}

/// Builds the function's manifest and deploys it, unless it is the one deployed already;
/// prints what happened. The function's name when it is deployed.
async fn reload(
    host: &functions_host::Host,
    args: &Arc<DevArgs>,
    base: &str,
    deployed: &mut Option<serde_json::Value>,
) -> Option<String> {
    let started = Instant::now();
    let built = {
        let args = args.clone();
        tokio::task::spawn_blocking(move || args.deploy.manifest()).await
    };
    let (name, manifest) = match built {
        Ok(Ok(built)) => built,
        Ok(Err(err)) => {
            eprintln!("functions-host dev: not reloaded: {err:#}");
            return None;
        }
        Err(err) => {
            eprintln!("functions-host dev: not reloaded: the build failed: {err}");
            return None;
        }
    };
    if deployed.as_ref() == Some(&manifest) {
        return Some(name);
    }
    let body = manifest.to_string();
    let source = functions_host::DeploySource::Body {
        body: body.as_bytes(),
        hints: functions_host::DeployHints {
            content_type: Some("application/json".to_owned()),
            ..functions_host::DeployHints::default()
        },
    };
    match host.deploy(&name, source).await {
        Ok(summary) => {
            println!(
                "functions-host dev: {} version {} ({}) ready in {} ms at {base}/fn/{}/",
                summary.name,
                summary.version,
                summary.language.as_str(),
                started.elapsed().as_millis(),
                summary.name
            );
            *deployed = Some(manifest);
            Some(name)
        }
        Err(err) => {
            let why = match source_excerpt(&err, &manifest) {
                Some(excerpt) => format!("{}\n{excerpt}", err.message()),
                None => describe(&err),
            };
            eprintln!(
                "functions-host dev: {name} not reloaded (the version before goes on serving): {why}"
            );
            None
        }
    }
}

/// The line a compile error points at, from the deployed files, with a caret under its column.
fn source_excerpt(err: &functions_host::Error, manifest: &serde_json::Value) -> Option<String> {
    let details = err.details();
    let file = details.get("file")?.as_str()?;
    let line = details.get("line")?.as_u64()?;
    let column = details.get("column")?.as_u64().unwrap_or(0);
    let source = manifest["files"][file].as_str()?;
    let text = source.lines().nth(line.checked_sub(1)? as usize)?;
    let gutter = format!("{line} | ");
    let caret = " ".repeat(gutter.len() + column.saturating_sub(1) as usize);
    Some(format!(
        "  --> {file}:{line}:{column}\n{gutter}{text}\n{caret}^"
    ))
}

/// Prints the function's log lines as they are stored, from now on.
fn tail_logs(host: &functions_host::Host, name: &str) {
    let mut follower = host.follow_logs(name, 0);
    tokio::spawn(async move {
        while let Ok(lines) = follower.next().await {
            for line in lines {
                println!(
                    "{}",
                    log_line(&line.level, line.source.as_str(), &line.message)
                );
            }
        }
    });
}

/// Watches the function's files: a JavaScript, TypeScript or Python file (and the
/// `requirements.txt` beside a Python one); or a directory, or the directory of a guest's
/// source file (its toolchain reads the files beside it: Go's package, C's headers, Rust's
/// modules), and everything under it but hidden entries, `node_modules`, `target` and
/// `__pycache__`. Each change sends a `()`.
fn watch(
    path: &Path,
    changes: tokio::sync::mpsc::UnboundedSender<()>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let path = std::path::absolute(path)?;
    let guest = crate::toolchain::guest_source(&path, None).is_some();
    let (root, mode, only): (PathBuf, _, Option<Vec<PathBuf>>) = if path.is_dir() {
        (path.clone(), notify::RecursiveMode::Recursive, None)
    } else if guest {
        let parent = path.parent().context("the file has no directory")?;
        (parent.to_owned(), notify::RecursiveMode::Recursive, None)
    } else {
        let parent = path
            .parent()
            .context("the file has no directory")?
            .to_owned();
        let wanted = vec![path.clone(), parent.join("requirements.txt")];
        (parent, notify::RecursiveMode::NonRecursive, Some(wanted))
    };
    let watched = root.clone();
    let relevant = move |changed: &Path| match &only {
        Some(files) => files.iter().any(|file| file == changed),
        None => !changed
            .strip_prefix(&root)
            .unwrap_or(changed)
            .components()
            .any(|part| {
                let part = part.as_os_str().to_string_lossy();
                part.starts_with('.') || matches!(&*part, "node_modules" | "target" | "__pycache__")
            }),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else {
            return;
        };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        if event.paths.iter().any(|changed| relevant(changed)) {
            let _ = changes.send(());
        }
    })?;
    watcher
        .watch(&watched, mode)
        .with_context(|| format!("watching {}", watched.display()))?;
    println!("functions-host dev: watching {}", path.display());
    Ok(watcher)
}

/// Opens `url` in the desktop's browser, if there is one.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match std::process::Command::new(opener).arg(url).spawn() {
        Ok(_) => {}
        Err(err) => eprintln!("functions-host dev: could not open {url} ({opener}: {err})"),
    }
}
