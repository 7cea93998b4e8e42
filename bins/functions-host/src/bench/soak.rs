//! `bench soak`: a mixed load on one functions-host for minutes: JavaScript in fresh and warm
//! isolates, a WebAssembly guest, Python (when Pyodide can be had) and asynchronous calls, from
//! four clients back to back. Every ten seconds it notes the requests, errors, latency
//! percentiles and the server's memory; at the end it checks that nothing failed and that memory
//! stayed flat after the warm-up: each minute's median reading within ±5 % of the first minute's
//! after it (a reading catches isolates and interpreters that come and go many times a second;
//! a minute's median shows what stays).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;
use bytes::Bytes;

use super::Which;
use super::engines::Engine;
use super::load::Connection;
use super::load::Target;
use super::report;
use super::report::svg;
use super::workloads;

/// How often a sample is taken.
const STEP: Duration = Duration::from_secs(10);

/// Clients sending requests at once.
const CLIENTS: usize = 4;

/// How far memory may stray after the warm-up from what it was when the warm-up ended.
const FLAT: f64 = 0.05;

/// How often the server's memory is read: each step's figure is the median of its readings
/// (isolates and interpreters come and go many times a second; one reading catches a moment).
const RSS_EVERY: Duration = Duration::from_millis(250);

/// One kind of request in the mix.
#[derive(Clone)]
struct Op {
    name: &'static str,
    /// The function's path (`/fn/NAME/`), or for a call the function's name.
    path: String,
    call: bool,
    /// How many of it in each client's cycle.
    weight: usize,
}

/// One step's figures.
#[derive(Clone, Debug, serde::Serialize)]
struct Step {
    /// Seconds since the start.
    at: f64,
    requests: usize,
    errors: usize,
    p50_ms: f64,
    p99_ms: f64,
    /// The median of the step's memory readings.
    rss_mib: f64,
    /// The least and the most of them.
    rss_min_mib: f64,
    rss_max_mib: f64,
    /// Every reading of the step.
    #[serde(skip)]
    rss_readings: Vec<f64>,
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    first_errors: Vec<String>,
    /// Requests answered, by kind, over the whole run.
    by_kind: std::collections::BTreeMap<&'static str, usize>,
}

pub async fn soak(length: Duration, html: Option<&Path>, command: &str) -> anyhow::Result<()> {
    let engine = Engine::functions_host()?;
    let fresh = workloads::workload(Which::ColdStart, None)?.context("cold-start")?;
    let mut function = fresh.function.clone();
    let warm = workloads::workload(Which::Throughput, None)?.context("throughput")?;
    let wasm = workloads::workload(Which::Wasm, None)?.context("wasm")?;
    let python = workloads::workload(Which::Python, None)?;
    // One server with every function of the mix.
    function.before = vec![
        ("warm".into(), warm.function.manifest.clone()),
        ("wasm".into(), wasm.function.manifest.clone()),
        ("calls".into(), fresh.function.manifest.clone()),
    ];
    if let Some(python) = &python {
        function
            .before
            .push(("python".into(), python.function.manifest.clone()));
        function.pyodide = python.function.pyodide.clone();
    }
    eprintln!("soak: starting functions-host");
    let server = engine.start(&function).await?;
    let mut ops = vec![
        op("fresh JS", &server.url(), false, 4),
        op("warm JS", &server.url_of("warm"), false, 8),
        op("wasm", &server.url_of("wasm"), false, 4),
        op("async call", "calls", true, 1),
    ];
    if python.is_some() {
        ops.push(op("python", &server.url_of("python"), false, 1));
    }
    let address = Target::new(&server.url(), None)?.address;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let until = started + length;
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let (ops, tally) = (ops.clone(), tally.clone());
        let base = Target {
            address,
            path: "/".into(),
            body: None,
        };
        clients.spawn(async move { run_client(client, &base, &ops, &tally, until).await });
    }
    eprintln!(
        "soak: {:.1} minutes of {} from {CLIENTS} clients",
        length.as_secs_f64() / 60.0,
        ops.iter().map(|op| op.name).collect::<Vec<_>>().join(", ")
    );
    let readings = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (readings, pid) = (readings.clone(), server.pid());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RSS_EVERY);
            loop {
                every.tick().await;
                let rss = super::engines::tree_rss_bytes(pid) as f64 / (1024.0 * 1024.0);
                readings.lock().unwrap_or_else(|p| p.into_inner()).push(rss);
            }
        })
    };
    let mut steps = Vec::new();
    let mut next = started + STEP;
    let mut by_kind = std::collections::BTreeMap::new();
    loop {
        let last = Instant::now() >= until;
        if last {
            // The requests under way when time ran out are counted too.
            while let Some(done) = clients.join_next().await {
                done??;
            }
        } else {
            tokio::time::sleep_until(next.min(until).into()).await;
            next += STEP;
        }
        let taken = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
        for (kind, count) in taken.by_kind {
            *by_kind.entry(kind).or_insert(0) += count;
        }
        if last && let Some(previous) = steps.last_mut() {
            // The requests that were under way when time ran out belong to the last step.
            let step: &mut Step = previous;
            step.requests += taken.latencies.len() + taken.errors;
            step.errors += taken.errors;
            for error in taken.first_errors {
                eprintln!("soak: error: {error}");
            }
            break;
        }
        let mut latencies = taken.latencies;
        latencies.sort();
        let mut rss = std::mem::take(&mut *readings.lock().unwrap_or_else(|p| p.into_inner()));
        if rss.is_empty() {
            rss.push(server.rss_bytes() as f64 / (1024.0 * 1024.0));
        }
        rss.sort_by(f64::total_cmp);
        let step = Step {
            at: started.elapsed().as_secs_f64(),
            requests: latencies.len() + taken.errors,
            errors: taken.errors,
            p50_ms: report::quantile(&latencies, 0.5),
            p99_ms: report::quantile(&latencies, 0.99),
            rss_mib: report::median(&rss).unwrap_or(0.0),
            rss_min_mib: rss[0],
            rss_max_mib: rss[rss.len() - 1],
            rss_readings: rss,
        };
        for error in taken.first_errors {
            eprintln!("soak: error: {error}");
        }
        eprintln!(
            "soak: {:>5.0} s  {:>6} requests  {} errors  p50 {:.2} ms  p99 {:.1} ms  RSS {:.0} \
             MiB ({:.0} to {:.0})",
            step.at,
            step.requests,
            step.errors,
            step.p50_ms,
            step.p99_ms,
            step.rss_mib,
            step.rss_min_mib,
            step.rss_max_mib
        );
        steps.push(step);
        if last {
            break;
        }
    }
    sampler.abort();
    let verdict = Verdict::of(&steps);
    println!("{}", verdict.describe(&steps));
    let kinds: Vec<String> = (by_kind.iter())
        .map(|(kind, count)| format!("{kind}: {count}"))
        .collect();
    println!("answered by kind: {}", kinds.join(", "));
    if let Some(path) = html {
        std::fs::write(path, page(command, &steps, &verdict))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("Wrote {}", path.display());
    }
    if !verdict.passed() {
        bail!("the soak failed");
    }
    Ok(())
}

fn op(name: &'static str, path_or_name: &str, call: bool, weight: usize) -> Op {
    let path = match path_or_name.strip_prefix("http://") {
        Some(rest) => rest[rest.find('/').unwrap_or(rest.len())..].to_owned(),
        None => path_or_name.to_owned(),
    };
    Op {
        name,
        path,
        call,
        weight,
    }
}

/// One client: the mix's requests in turn (each `weight` times per cycle), until `until`.
async fn run_client(
    client: usize,
    base: &Target,
    ops: &[Op],
    tally: &Mutex<Tally>,
    until: Instant,
) -> anyhow::Result<()> {
    let cycle: Vec<&Op> = ops
        .iter()
        .flat_map(|op| std::iter::repeat_n(op, op.weight))
        .collect();
    let mut connection = Connection::open(base).await?;
    // Clients start at different places in the cycle.
    let mut index = client * cycle.len() / CLIENTS;
    while Instant::now() < until {
        let op = cycle[index % cycle.len()];
        index += 1;
        let started = Instant::now();
        let result = match op.call {
            false => connection
                .request("POST", &op.path, Some(Bytes::from_static(b"{}")))
                .await
                .map(drop),
            true => call(&mut connection, &op.path).await,
        };
        let took = started.elapsed();
        let failed = {
            let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(()) => {
                    tally.latencies.push(took);
                    *tally.by_kind.entry(op.name).or_insert(0) += 1;
                    false
                }
                Err(err) => {
                    tally.errors += 1;
                    if tally.first_errors.len() < 3 {
                        tally.first_errors.push(format!("{}: {err:#}", op.name));
                    }
                    true
                }
            }
        };
        if failed {
            // A broken connection is replaced.
            connection = Connection::open(base).await?;
        }
    }
    Ok(())
}

/// An asynchronous call of `name` and its result.
async fn call(connection: &mut Connection, name: &str) -> anyhow::Result<()> {
    let (_, accepted) = connection
        .request(
            "POST",
            &format!("/api/functions/{name}/calls"),
            Some(Bytes::from_static(b"{}")),
        )
        .await?;
    let accepted: serde_json::Value = serde_json::from_slice(&accepted)?;
    let id = accepted["call_id"].as_str().context("no call_id")?;
    let (status, result) = connection
        .request("GET", &format!("/api/calls/{id}?wait=30"), None)
        .await?;
    if status != 200 || result.is_empty() {
        bail!("call {id}: not done after 30 s (status {status})");
    }
    Ok(())
}

/// Whether the soak passed.
struct Verdict {
    errors: usize,
    requests: usize,
    /// Each minute's memory: the median of its readings, in MiB.
    minutes: Vec<f64>,
    /// Minutes of the warm-up, left out of the memory check.
    warm_up: usize,
    /// The first minute after the warm-up's memory, what the later ones are compared with.
    reference_rss: f64,
    /// The largest distance of a later minute's from the reference, as a fraction of it.
    rss_spread: f64,
}

/// Steps in a minute.
const STEPS_PER_MINUTE: usize = 6;

impl Verdict {
    fn of(steps: &[Step]) -> Self {
        let minutes: Vec<f64> = steps
            .chunks(STEPS_PER_MINUTE)
            .map(|minute| {
                let readings: Vec<f64> = (minute.iter())
                    .flat_map(|s| s.rss_readings.iter().copied())
                    .collect();
                report::median(&readings).unwrap_or(0.0)
            })
            .collect();
        // The first fifth, at most two minutes, and never every minute.
        let warm_up = (minutes.len() / 5)
            .clamp(1, 2)
            .min(minutes.len().saturating_sub(1));
        let after = &minutes[warm_up.min(minutes.len())..];
        let reference_rss = after.first().copied().unwrap_or(0.0);
        let rss_spread = after
            .iter()
            .map(|rss| (rss - reference_rss).abs() / reference_rss)
            .fold(0.0, f64::max);
        Self {
            errors: steps.iter().map(|s| s.errors).sum(),
            requests: steps.iter().map(|s| s.requests).sum(),
            minutes,
            warm_up,
            reference_rss,
            rss_spread,
        }
    }

    fn passed(&self) -> bool {
        self.errors == 0 && self.rss_spread <= FLAT && self.requests > 0
    }

    fn describe(&self, steps: &[Step]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>6} {:>9} {:>6} {:>9} {:>9} {:>10} {:>16}",
            "minute", "requests", "errors", "p50", "p99", "RSS", "(least, most)"
        );
        let minutes = steps.chunks(STEPS_PER_MINUTE).zip(&self.minutes);
        for (index, (minute, rss)) in minutes.enumerate() {
            let requests: usize = minute.iter().map(|s| s.requests).sum();
            let errors: usize = minute.iter().map(|s| s.errors).sum();
            let worst = |f: fn(&Step) -> f64| minute.iter().map(f).fold(0.0, f64::max);
            let least = minute
                .iter()
                .map(|s| s.rss_min_mib)
                .fold(f64::MAX, f64::min);
            let _ = writeln!(
                out,
                "{:>6} {:>9} {:>6} {:>6.2} ms {:>6.1} ms {:>6.0} MiB {:>16}",
                index + 1,
                requests,
                errors,
                // The steps' medians' median, and the worst step's p99.
                report::median(&minute.iter().map(|s| s.p50_ms).collect::<Vec<_>>()).unwrap_or(0.0),
                worst(|s| s.p99_ms),
                rss,
                format!("({least:.0}, {:.0})", worst(|s| s.rss_max_mib)),
            );
        }
        let _ = writeln!(
            out,
            "{} requests, {} errors; memory (each minute's median reading) after the {}-minute \
             warm-up: {:.0} MiB, later minutes at most {:.1} % from it (limit {:.0} %): {}",
            self.requests,
            self.errors,
            self.warm_up,
            self.reference_rss,
            self.rss_spread * 100.0,
            FLAT * 100.0,
            if self.passed() { "PASS" } else { "FAIL" }
        );
        out
    }
}

/// The HTML report: latency, requests and memory over time.
fn page(command: &str, steps: &[Step], verdict: &Verdict) -> String {
    let minutes = |f: fn(&Step) -> f64| -> Vec<(f64, f64)> {
        steps.iter().map(|s| (s.at / 60.0, f(s))).collect()
    };
    let series = |name: &str, points| svg::Series {
        name: name.to_owned(),
        points,
    };
    let mut body = format!(
        "<p><code>{}</code></p><pre>{}</pre><div class=charts>",
        report::escape(command),
        report::escape(&verdict.describe(steps))
    );
    body.push_str(&svg::lines(
        "Latency (ms) over minutes",
        &[
            series("p50", minutes(|s| s.p50_ms)),
            series("p99", minutes(|s| s.p99_ms)),
        ],
    ));
    body.push_str(&svg::lines(
        "Resident memory (MiB) over minutes: each step's median, least and most",
        &[
            series("median", minutes(|s| s.rss_mib)),
            series("least", minutes(|s| s.rss_min_mib)),
            series("most", minutes(|s| s.rss_max_mib)),
        ],
    ));
    body.push_str(&svg::lines(
        "Requests and errors per 10 s over minutes",
        &[
            series("requests", minutes(|s| s.requests as f64)),
            series("errors", minutes(|s| s.errors as f64)),
        ],
    ));
    body.push_str("</div>");
    report::page("functions-host bench soak", &body)
}
