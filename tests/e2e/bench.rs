//! `functions-host bench`: side by side with workerd and `deno serve` (npm's, installed by
//! tests/setup.sh into tests/bench), its JSON and HTML reports, and a short soak.

use crate::harness::BINARY;
use crate::harness::command;
use crate::harness::repository;

/// The program npm installed for `engine` in tests/bench.
fn engine(engine: &str) -> String {
    let path = repository()
        .join("tests/bench/node_modules/.bin")
        .join(engine);
    assert!(
        path.exists(),
        "{} is missing: run tests/setup.sh",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// `functions-host bench ARGS`, which must succeed: what it printed on standard output.
fn bench(args: &[&str]) -> Vec<u8> {
    let output = command(BINARY).arg("bench").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn bench_runs_the_same_function_in_functions_host_workerd_and_deno_and_reports_it() {
    let out = tempfile::tempdir().unwrap();
    let html = out.path().join("report.html");
    let output = command(BINARY)
        .args(["bench", "throughput", "--rounds", "2", "--json", "--vs"])
        .arg(engine("workerd"))
        .arg("--vs")
        .arg(engine("deno"))
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let progress = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{progress}");
    // Progress while it runs: each engine's rounds, alternating.
    let rounds: Vec<&str> = progress.lines().filter(|l| l.contains("round")).collect();
    assert_eq!(rounds.len(), 6, "{progress}");
    assert!(rounds[0].contains("functions-host round 1/2"), "{progress}");
    assert!(rounds[1].contains("workerd round 1/2"), "{progress}");
    assert!(rounds[2].contains("deno serve round 1/2"), "{progress}");
    assert!(rounds[3].contains("functions-host round 2/2"), "{progress}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let workload = &report["workloads"][0];
    assert_eq!(workload["name"], "throughput");
    let figures = workload["figures"].as_array().unwrap();
    let engines: Vec<&str> = figures
        .iter()
        .map(|f| f["engine"].as_str().unwrap())
        .collect();
    assert_eq!(engines, ["functions-host", "workerd", "deno serve"]);
    for f in figures {
        let (p50, p99) = (f["p50_ms"].as_f64().unwrap(), f["p99_ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p99 >= p50, "{f}");
        let rate = f["requests_per_second"].as_f64().unwrap();
        assert!(rate > 0.0, "{f}");
        assert!(f["requests"].as_u64().unwrap() as f64 >= rate, "{f}");
        assert!(f["rss_mib"].as_f64().unwrap() > 1.0, "{f}");
        assert_eq!(f["distribution"].as_array().unwrap().len(), 99);
    }
    // Ratios to functions-host, which has none of its own.
    assert!(figures[0]["p50_vs_functions_host"].is_null());
    let ratio = figures[1]["rate_vs_functions_host"].as_f64().unwrap();
    let expected = figures[1]["requests_per_second"].as_f64().unwrap()
        / figures[0]["requests_per_second"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-9);
    // A page that opens offline: everything inline.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("workerd") && page.contains("throughput"));
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
}

#[test]
fn a_bench_of_a_cold_start_times_a_fresh_isolate_here_and_a_process_start_there() {
    let deno = engine("deno");
    let stdout = bench(&["cold-start", "--rounds", "1", "--json", "--vs", &deno]);
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let workload = &report["workloads"][0];
    let figures = workload["figures"].as_array().unwrap();
    let rows: Vec<&str> = figures
        .iter()
        .map(|f| f["engine"].as_str().unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            "functions-host",
            "functions-host (new process)",
            "deno serve"
        ]
    );
    // 200 requests to a running functions-host; 10 processes of each, started for a request.
    let requests: Vec<u64> = figures
        .iter()
        .map(|f| f["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(requests, [200, 10, 10]);
    // Deno's process start is compared with functions-host's.
    assert_eq!(workload["baseline"], "functions-host (new process)");
    let ratio = figures[2]["p50_vs_functions_host"].as_f64().unwrap();
    let expected = figures[2]["p50_ms"].as_f64().unwrap() / figures[1]["p50_ms"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-9);
    assert!(figures[1]["p50_vs_functions_host"].is_null());
}

#[test]
fn a_bench_of_the_users_own_function_deploys_it() {
    let dir = tempfile::tempdir().unwrap();
    let function = dir.path().join("mine.js");
    std::fs::write(
        &function,
        "export default { fetch() { return new Response('mine'); } };\n",
    )
    .unwrap();
    let stdout = bench(&["wasm", "--rounds", "1"]);
    let table = String::from_utf8_lossy(&stdout);
    assert!(
        table.contains("wasm") && table.contains("functions-host"),
        "{table}"
    );
    let path = function.to_str().unwrap();
    let stdout = bench(&["cold-start", "--rounds", "1", "--json", "--function", path]);
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(report["workloads"][0]["figures"][0]["requests"], 200);
    // A function that fails is reported, not measured.
    std::fs::write(
        &function,
        "export default { fetch() { throw new Error('no'); } };\n",
    )
    .unwrap();
    let output = command(BINARY)
        .args(["bench", "throughput", "--rounds", "1", "--function"])
        .arg(&function)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("500"), "{said}");
}

#[test]
fn a_short_soak_runs_the_mixed_load_without_an_error() {
    let out = tempfile::tempdir().unwrap();
    let html = out.path().join("soak.html");
    let output = command(BINARY)
        .args(["bench", "soak", "--minutes", "0.3", "--html"])
        .arg(&html)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(", 0 errors;"), "{stdout}");
    assert!(stdout.contains("PASS"), "{stdout}");
    // Every kind of request in the mix was answered.
    let answered = stdout
        .lines()
        .find_map(|line| line.strip_prefix("answered by kind: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    for kind in ["fresh JS", "warm JS", "wasm", "async call"] {
        let count: u64 = answered
            .split(", ")
            .find_map(|part| part.strip_prefix(&format!("{kind}: ")))
            .unwrap_or_else(|| panic!("no {kind} in {answered}"))
            .parse()
            .unwrap();
        assert!(count > 0, "{answered}");
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Resident memory") && page.contains("<polyline"));
}

#[test]
fn bench_compares_csharp_with_node_booting_the_same_runtime() {
    let node = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join("node"))
        .find(|path| path.is_file())
        .expect("node is on the PATH (tests/setup.sh installs npm packages with it)");
    let output = command(BINARY)
        .args(["bench", "csharp", "--rounds", "1", "--json", "--vs"])
        .arg(&node)
        .env(
            "FUNCTIONS_HOST_DOTNET_RUNTIME",
            crate::harness::dotnet_runtime(),
        )
        .output()
        .unwrap();
    let progress = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{progress}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let workload = &report["workloads"][0];
    assert_eq!(workload["name"], "csharp");
    let figures = workload["figures"].as_array().unwrap();
    let engines: Vec<&str> = figures
        .iter()
        .map(|f| f["engine"].as_str().unwrap())
        .collect();
    // functions-host's fresh invocations against Node's process starts, each booting the runtime.
    assert_eq!(engines, ["functions-host", "node (dotnet.create)"]);
    assert_eq!(figures[0]["requests"], 20, "{workload}");
    assert_eq!(figures[1]["requests"], 10, "{workload}");
    let ratio = figures[1]["p50_vs_functions_host"].as_f64().unwrap();
    let expected = figures[1]["p50_ms"].as_f64().unwrap() / figures[0]["p50_ms"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-9);
}
