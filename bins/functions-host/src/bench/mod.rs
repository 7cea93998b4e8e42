//! `functions-host bench`: runs the same function in functions-host and, with `--vs`, in workerd
//! and `deno serve`, each in a process of its own on this machine, in rounds that alternate
//! between them (so that the machine's drift touches all alike), and reports latency
//! percentiles, requests per second, memory and ratios as a table, JSON or an HTML page.
//! `bench soak` runs a mixed load for minutes and checks errors and memory over time.

mod engines;
mod load;
mod report;
mod soak;
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use engines::Engine;
use engines::Kind;
use report::Figures;
use report::Report;
use report::Rounds;
use report::Workload;

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// A request to a function that is not running yet: on functions-host a fresh isolate per
    /// request; on workerd and Deno a process started for it.
    ColdStart,
    /// Requests per second and latency of a warm function, 8 connections back to back.
    Throughput,
    /// 200 requests at once to a function that awaits a 1 s timer.
    Concurrency,
    /// A WebAssembly (WASI) guest, a fresh instance per request.
    Wasm,
    /// A Python function restored from its memory snapshot per request.
    Python,
    /// A function calling another through a binding (`env.MATH.add`).
    Rpc,
    /// A C# function restored from its memory snapshot per request.
    Csharp,
    /// The same C# function warm.
    CsharpWarm,
    /// All of the above.
    All,
    /// A mixed load for `--minutes`, watching errors, latency and memory over time.
    Soak,
}

/// `bench`'s arguments.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value = "all")]
    which: Which,
    /// Also run it in `workerd` or `deno` (JavaScript), or `node` (C#, booting the .NET
    /// runtime), found on the PATH, or the program at a path; repeatable.
    #[arg(long = "vs", value_name = "ENGINE")]
    vs: Vec<String>,
    /// Your function instead of the built-in hello (an ES module with a `fetch` handler runs
    /// in every engine; anything `deploy` takes runs in functions-host alone).
    #[arg(long)]
    function: Option<PathBuf>,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report with charts to this file.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Rounds per engine (alternating between engines).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// How long `soak` runs, in minutes.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
}

/// Runs the bench.
pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    if args.which == Which::Soak {
        let length = Duration::try_from_secs_f64(args.minutes * 60.0)
            .ok()
            .filter(|length| *length >= Duration::from_secs(10))
            .context("--minutes: at least 10 seconds' worth")?;
        return soak::soak(length, args.html.as_deref(), &command).await;
    }
    let mut engines = vec![Engine::functions_host()?];
    for name in &args.vs {
        engines.push(Engine::named(name)?);
    }
    let chosen: Vec<Which> = match args.which {
        Which::All => vec![
            Which::ColdStart,
            Which::Throughput,
            Which::Concurrency,
            Which::Wasm,
            Which::Python,
            Which::Rpc,
            Which::Csharp,
            Which::CsharpWarm,
        ],
        one => vec![one],
    };
    let mut measured = Vec::new();
    for (index, which) in chosen.iter().enumerate() {
        let Some(workload) = workloads::workload(*which, args.function.as_deref())? else {
            continue;
        };
        let label = format!("[{}/{}] {}", index + 1, chosen.len(), workload.name);
        let taking_part: Vec<&Engine> = engines
            .iter()
            .filter(|engine| {
                engine.kind == Kind::FunctionsHost || workload.others.contains(&engine.kind)
            })
            .collect();
        if taking_part.len() < engines.len() {
            eprintln!("{label}: functions-host only (the other engines cannot run it)");
        }
        let rows = run_workload(&workload, &taking_part, args.rounds, &label)
            .await
            .with_context(|| format!("bench {}", workload.name))?;
        let figures = (rows.iter())
            .map(|(name, version, rounds)| Figures::of(name, version, rounds))
            .collect();
        // A cold start is compared with functions-host's own process start, when it is measured.
        let baseline = usize::from(workload.host_starts_too);
        measured.push(Workload::new(
            &workload.name,
            &workload.what,
            figures,
            baseline,
        ));
    }
    let report = Report {
        command,
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        machine: machine(),
        workloads: measured,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = &args.html {
        std::fs::write(path, report.html())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("Wrote {}", path.display());
    }
    Ok(())
}

/// How long the machine is left to settle (an engine tearing down what the last round made)
/// before each round.
const SETTLE: Duration = Duration::from_millis(500);

/// Every row's rounds of `workload` (an engine, or for a cold start also functions-host's
/// process start), alternating between them: its name, version and rounds.
async fn run_workload(
    workload: &workloads::Workload,
    engines: &[&Engine],
    rounds: usize,
    label: &str,
) -> anyhow::Result<Vec<(String, String, Rounds)>> {
    // Each row: its engine, and whether each of its samples is a process started for it.
    let mut rows: Vec<(&Engine, bool)> = Vec::new();
    for engine in engines {
        let functions_host = engine.kind == Kind::FunctionsHost;
        if functions_host || !workload.others_start_per_request {
            rows.push((engine, false));
        }
        let starts = match functions_host {
            true => workload.host_starts_too,
            false => workload.others_start_per_request,
        };
        if starts {
            rows.push((engine, true));
        }
    }
    let name = |(engine, starts): &(&Engine, bool)| match (engine.kind, starts) {
        (Kind::FunctionsHost, true) => "functions-host (new process)".to_owned(),
        (kind, _) => kind.name().to_owned(),
    };
    let mut results = vec![Rounds::default(); rows.len()];
    // Started once, unless the workload is their start.
    let mut running = Vec::new();
    for (engine, starts) in &rows {
        running.push(match starts {
            true => None,
            false => {
                eprintln!("{label}: starting {}", engine.kind.name());
                Some(engine.start(&workload.function).await?)
            }
        });
    }
    for round in 1..=rounds {
        for (i, row) in rows.iter().enumerate() {
            let engine = row.0;
            eprintln!("{label}: {} round {round}/{rounds}", name(row));
            tokio::time::sleep(SETTLE).await;
            let result = &mut results[i];
            match &running[i] {
                Some(server) => {
                    let target =
                        load::Target::new(&server.url(), workload.function.body.as_deref())?;
                    workload.measure.run(&target, result).await?;
                    result.rss.push(server.rss_bytes());
                }
                None => {
                    for _ in 0..workloads::PROCESS_STARTS_PER_ROUND {
                        let started = std::time::Instant::now();
                        let server = engine.start(&workload.function).await?;
                        result.latencies.push(started.elapsed());
                        result.rss.push(server.rss_bytes());
                    }
                }
            }
        }
    }
    Ok((rows.iter().zip(results))
        .map(|(row, rounds)| (name(row), row.0.version.clone(), rounds))
        .collect())
}

/// This machine: its cores and memory.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or_else(String::new, |kib| {
            format!(", {:.0} GiB", kib as f64 / 1024.0 / 1024.0)
        });
    format!("{cores} cores{memory}, {}", std::env::consts::ARCH)
}
