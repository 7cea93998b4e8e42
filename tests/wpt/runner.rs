//! Runs web-platform-tests inside functions-host: each `.any.js` test file becomes one function
//! (testharness.js, the file's `META: script`s and the file, loaded as classic scripts) invoked
//! once in a fresh isolate, as every function is. Resources are served to the test's `fetch` by
//! a file server on an ephemeral port, the only host the test functions may reach.
//!
//! The tests come from `tests/wpt/fetch.sh` (pinned). Every subtest that fails must be listed in
//! `tests/wpt/expectations.json`; one that is not fails this run, so a test that passed cannot
//! start failing unnoticed. `WPT_UPDATE=1` rewrites the list from this run's results, and
//! `WPT_FILTER=substring` runs only matching files. Prints pass counts per directory.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use functions_runtime::Engine;
use functions_runtime::EngineConfig;
use functions_runtime::Function;
use functions_runtime::Limits;
use functions_runtime::Module;
use functions_runtime::Request;
use functions_runtime::Settings;
use serde_json::Value;

mod workerd;

/// The directories run, as the issue lists them.
const DIRECTORIES: &[&str] = &[
    "url",
    "encoding",
    "streams",
    "WebCryptoAPI",
    "html/webappapis/structured-clone",
    "html/webappapis/atob",
    "html/webappapis/timers",
    "dom/abort",
    "fetch/api/headers",
    "fetch/api/request",
    "fetch/api/response",
    "fetch/api/body",
];

/// testharness.js status of a passing subtest.
const PASS: u64 = 0;

fn main() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/wpt");
    let root = here.join("upstream");
    if !root.join(".complete").exists() {
        eprintln!(
            "web-platform-tests are missing: run tests/wpt/fetch.sh (tests/setup.sh does) first"
        );
        std::process::exit(1);
    }
    let expectations_path = here.join("expectations.json");
    let expectations: BTreeMap<String, Vec<String>> = std::fs::read_to_string(&expectations_path)
        .ok()
        .map(|text| serde_json::from_str(&text).expect("expectations.json is valid"))
        .unwrap_or_default();
    let filter = std::env::var("WPT_FILTER").ok();
    let update = std::env::var_os("WPT_UPDATE").is_some();

    let server = serve_files(root.clone());
    let harness = std::fs::read_to_string(here.join("harness.js")).unwrap();
    if let Some(workerd) = std::env::var_os("WPT_WORKERD") {
        compare_with_workerd(
            Path::new(&workerd),
            &root,
            &harness,
            &server,
            filter.as_deref(),
        );
        return;
    }
    let engine = Engine::new(EngineConfig {
        workers: 2,
        // Each file's function runs once: an isolate prepared for a next invocation would run
        // the whole file's top-level code (its tests) again, beside the next files.
        prepared_per_worker: 0,
        ..EngineConfig::default()
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut regressions = Vec::new();
    let mut fixed = Vec::new();
    let mut table = Vec::new();
    for directory in DIRECTORIES {
        let (mut passed, mut total, mut files) = (0, 0, 0);
        let relatives = test_files(&root, directory, filter.as_deref());
        // Two files at a time, one per worker.
        let mut results = Vec::new();
        for pair in relatives.chunks(2) {
            let functions: Vec<Function> = pair
                .iter()
                .map(|relative| test_function(&root, relative, &harness, &server))
                .collect();
            let run = |function| engine.invoke(function, Request::json("{}"));
            let outcomes = runtime.block_on(async {
                match functions.as_slice() {
                    [a, b] => {
                        let (a, b) = tokio::join!(run(a), run(b));
                        vec![a, b]
                    }
                    [a] => vec![run(a).await],
                    _ => unreachable!("chunks of two"),
                }
            });
            results.extend(pair.iter().cloned().zip(outcomes));
        }
        for (relative, outcome) in results {
            files += 1;
            let subtests = subtest_results(outcome);
            let expected: &[String] = expectations.get(&relative).map_or(&[], Vec::as_slice);
            for (name, pass) in &subtests {
                total += 1;
                if *pass {
                    passed += 1;
                    if expected.contains(name) {
                        fixed.push(format!("{relative}: {name}"));
                    }
                } else {
                    failures
                        .entry(relative.clone())
                        .or_default()
                        .push(name.clone());
                    if !expected.contains(name) {
                        regressions.push(format!("{relative}: {name}"));
                    }
                }
            }
        }
        println!("{directory}: {passed}/{total} subtests passed ({files} files)");
        table.push((directory, passed, total, files));
    }

    println!("\n| directory | files | subtests passed |\n|---|---|---|");
    for (directory, passed, total, files) in &table {
        println!("| {directory} | {files} | {passed} / {total} |");
    }
    if !fixed.is_empty() {
        println!(
            "\n{} subtests listed as failing now pass (WPT_UPDATE=1 to update the list):",
            fixed.len()
        );
        for line in &fixed {
            println!("  {line}");
        }
    }
    if update {
        let text = serde_json::to_string_pretty(&failures).unwrap() + "\n";
        std::fs::write(&expectations_path, text).unwrap();
        println!("\nwrote {}", expectations_path.display());
        return;
    }
    if !regressions.is_empty() {
        eprintln!(
            "\n{} subtests failed that are not expected to:",
            regressions.len()
        );
        for line in &regressions {
            eprintln!("  {line}");
        }
        std::process::exit(1);
    }
    let passed: usize = table.iter().map(|row| row.1).sum();
    println!("\ntest result: ok. {passed} passed; 0 failed (web-platform-tests)");
}

/// `WPT_WORKERD=/path/to/workerd`: runs the same test modules in workerd instead, and prints its
/// pass counts per directory (no expectations: a comparison, not a check).
fn compare_with_workerd(
    workerd: &Path,
    root: &Path,
    harness: &str,
    server: &str,
    filter: Option<&str>,
) {
    println!("| directory | files | workerd subtests passed |\n|---|---|---|");
    for directory in DIRECTORIES {
        let (mut passed, mut total, mut files) = (0, 0, 0);
        for relative in test_files(root, directory, filter) {
            files += 1;
            let module = test_module(root, &relative, harness, server);
            let subtests = match workerd::run(workerd, &module, Duration::from_secs(120)) {
                Ok(body) => subtests_of_report(&body),
                Err(err) => vec![(format!("(file) {err}"), false)],
            };
            total += subtests.len();
            passed += subtests.iter().filter(|(_, pass)| *pass).count();
        }
        println!("| {directory} | {files} | {passed} / {total} |");
    }
}

/// The `.any.js` files under `root/directory` whose path (relative to `root`) contains `filter`,
/// sorted, as paths relative to `root`.
fn test_files(root: &Path, directory: &str, filter: Option<&str>) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![root.join(directory)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "resources") {
                    pending.push(path);
                }
            } else if path.to_string_lossy().ends_with(".any.js") && runs_in_workers(&path) {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if filter.is_none_or(|f| relative.contains(f)) {
                    files.push(relative);
                }
            }
        }
    }
    files.sort();
    files
}

/// Whether WPT runs the test file at `path` in a worker, the kind of global scope a function has:
/// files without `META: global` run in a window and a dedicated worker; the others name theirs.
fn runs_in_workers(path: &Path) -> bool {
    let source = std::fs::read_to_string(path).unwrap_or_default();
    source
        .lines()
        .find_map(|line| line.strip_prefix("// META: global="))
        .is_none_or(|globals| {
            globals.split(',').any(|global| {
                matches!(
                    global.trim(),
                    "worker" | "dedicatedworker" | "sharedworker" | "serviceworker"
                )
            })
        })
}

/// The function that runs the test at `relative` (a path under `root`).
fn test_function(root: &Path, relative: &str, harness: &str, server: &str) -> Function {
    let entry = test_module(root, relative, harness, server);
    Function::new(
        "wpt",
        1,
        "index.js",
        BTreeMap::from([("index.js".to_owned(), Module::javascript(entry))]),
        Settings {
            allow_net: vec![server.to_owned()],
            // A test runs in a worker whose location is the test file's URL.
            location: Some(test_url(server, relative).parse().unwrap()),
            // A test file's budget, larger than a function's: the harness stops unfinished tests
            // well before it (see `harness.js`).
            limits: Limits {
                cpu_time: Duration::from_secs(120),
                wall_clock: Duration::from_secs(120),
                memory_bytes: 1024 * 1024 * 1024,
            },
            ..Settings::default()
        },
    )
}

/// The module (`harness.js` filled in) that runs the test at `relative` (a path under `root`).
fn test_module(root: &Path, relative: &str, harness: &str, server: &str) -> String {
    let source = std::fs::read_to_string(root.join(relative)).unwrap();
    let directory = Path::new(relative).parent().unwrap();
    let mut scripts = vec!["/resources/testharness.js".to_owned()];
    for line in source.lines() {
        let Some(script) = line.strip_prefix("// META: script=") else {
            continue;
        };
        let script = script.trim();
        scripts.push(if script.starts_with('/') {
            script.to_owned()
        } else {
            format!("/{}", directory.join(script).to_string_lossy())
        });
    }
    scripts.push(format!("/{relative}"));
    let mut script = String::new();
    for (index, path) in scripts.iter().enumerate() {
        // WPT's server serves the IDL parser under this name.
        let file = match path.as_str() {
            "/resources/WebIDLParser.js" => "resources/webidl2/lib/webidl2.js",
            path => path.trim_start_matches('/'),
        };
        let code = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|err| format!("throw new Error('cannot read {path}: {err}');"));
        script.push_str(&format!("// {path}\n{code}\n;\n"));
        if index == 0 {
            script.push_str("__wptReport();\n");
        }
    }
    harness
        .replace("__SCRIPT__", &serde_json::to_string(&script).unwrap())
        .replace(
            "__TEST_URL__",
            &serde_json::to_string(&test_url(server, relative)).unwrap(),
        )
}

/// Where the test at `relative` lives on the runner's file server.
fn test_url(server: &str, relative: &str) -> String {
    format!("http://{server}/{relative}")
}

/// (subtest name, passed) of one test file; a file that failed as a whole counts as one subtest.
fn subtest_results(outcome: functions_runtime::Outcome) -> Vec<(String, bool)> {
    let body = match outcome.result {
        Ok(response) => response.body.as_full().unwrap_or_default().to_vec(),
        Err(err) => {
            if std::env::var_os("WPT_VERBOSE").is_some() {
                eprintln!("{err:?}");
            }
            let message = err.to_string();
            return vec![(format!("(file) {}", first_line(&message)), false)];
        }
    };
    subtests_of_report(&body)
}

/// (subtest name, passed) from the JSON report `harness.js` answers with.
fn subtests_of_report(body: &[u8]) -> Vec<(String, bool)> {
    let report: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut subtests: Vec<(String, bool)> = report["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|result| {
            let name = result["name"].as_str().unwrap_or("").to_owned();
            let pass = result["status"].as_u64() == Some(PASS);
            if !pass && std::env::var_os("WPT_VERBOSE").is_some() {
                eprintln!("FAIL {name}: {}", result["message"]);
            }
            (name, pass)
        })
        .collect();
    if report["timed_out"] == true {
        // Slow here (RSA key generation in a debug build): how many subtests finish depends on
        // the machine, so the unfinished ones are neither passes nor failures.
        eprintln!("(the file ran past its time limit; its unfinished subtests are not counted)");
    } else if report["harness_status"].as_u64() != Some(0) {
        if std::env::var_os("WPT_VERBOSE").is_some() {
            eprintln!("HARNESS {}", report["harness_message"]);
        }
        // A harness error or timeout: the file did not run to its end.
        subtests.push(("(harness)".to_owned(), false));
    }
    subtests
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Serves the files under `root` over HTTP/1.1 on an ephemeral port (GET only, one thread per
/// connection); returns its `host:port`.
fn serve_files(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split(['?', '#']).next().unwrap_or("/");
                let file = root.join(path.trim_start_matches('/'));
                let inside = !path.split('/').any(|part| part == "..");
                let mut stream = stream;
                let reply = match std::fs::read(&file) {
                    Ok(bytes) if inside && file.is_file() => {
                        let content_type = match file.extension().and_then(|e| e.to_str()) {
                            Some("json") => "application/json",
                            Some("js") => "text/javascript",
                            Some("html") => "text/html",
                            _ => "application/octet-stream",
                        };
                        let mut reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            bytes.len()
                        )
                        .into_bytes();
                        reply.extend_from_slice(&bytes);
                        reply
                    }
                    _ => {
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = stream.write_all(&reply);
            });
        }
    });
    address
}
