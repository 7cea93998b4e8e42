//! The TypeScript SDK (`sdk/typescript`, the npm package `functions-host-client`), end to end:
//! builds it with `npm run build` (tsc) and runs its own tests (`node --test test/`), which start
//! this build's `functions-host` binary (`FUNCTIONS_HOST_BIN`) and drive it through the client.

use std::path::Path;
use std::path::PathBuf;
use std::process::Output;

use crate::harness;

/// `sdk/typescript/` in this workspace.
fn sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/typescript")
}

/// Runs `program args` in the SDK's directory with the server binary in `FUNCTIONS_HOST_BIN`,
/// and fails the test, printing what it wrote, unless it succeeds.
fn run(program: &str, args: &[&str]) -> Output {
    let out = harness::command(program)
        .args(args)
        .current_dir(sdk())
        .env("FUNCTIONS_HOST_BIN", harness::BINARY)
        .env_remove("FUNCTIONS_HOST_API_KEYS")
        .env_remove("FUNCTIONS_API_KEY")
        .output()
        .unwrap_or_else(|err| panic!("running {program}: {err}"));
    assert!(
        out.status.success(),
        "`{program} {}` in {} failed ({})\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        sdk().display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    out
}

#[test]
fn the_typescript_sdk_builds_and_passes_its_tests_against_the_server() {
    assert!(
        sdk().join("node_modules/typescript").exists(),
        "the SDK's dev dependencies are missing: `npm ci --prefix sdk/typescript` (tests/setup.sh does)"
    );
    run("npm", &["run", "build"]);
    // (TAP, whatever Node's default reporter: its summary lines are stable.)
    let tests: Vec<String> = std::fs::read_dir(sdk().join("test"))
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().ok()?;
            name.ends_with(".test.mjs").then(|| format!("test/{name}"))
        })
        .collect();
    let mut args = vec!["--test", "--test-reporter=tap"];
    args.extend(tests.iter().map(String::as_str));
    let out = run("node", &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The runner's summary: tests ran, none failed.
    assert!(
        stdout.lines().any(|line| line.starts_with("# fail 0")),
        "{stdout}"
    );
    assert!(
        !stdout.lines().any(|line| line.starts_with("# pass 0")),
        "no test ran\n{stdout}"
    );
}
