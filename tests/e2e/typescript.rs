//! TypeScript and multi-file functions through the server: compiled once at deploy, stored, and
//! reported against the original `.ts` files.

use serde_json::json;

use crate::harness;
use crate::harness::Server;

#[test]
fn a_typescript_directory_deploys_runs_and_maps_its_errors() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let app = harness::fixtures().join("ts/app");
    let out = server.cli(&["deploy", app.to_str().unwrap(), "--env", "GREETING=Hi"]);
    assert!(out.contains("Deployed app version 1 (typescript)"), "{out}");

    let v = server.get("/fn/app/?name=Deno").json();
    assert_eq!(v, json!({ "message": "Hi, Deno!", "version": 3 }));
    assert_eq!(server.get("/fn/app/").json()["message"], "Hi, TypeScript!");

    // An uncaught exception: the 500's stack and the logged `err.stack` point into index.ts.
    let reply = server.get("/fn/app/fail?why=testing");
    assert_eq!(reply.status, 500);
    let error = &reply.json()["error"];
    let stack = error["stack"].as_str().unwrap();
    assert!(stack.contains("exploded: testing"), "{stack}");
    assert!(stack.contains("app/index.ts:27:"), "{stack}");
    assert!(stack.contains("app/index.ts:14:"), "{stack}");
    let lines = server.log_lines("app");
    let logged = lines
        .iter()
        .find(|message| message.contains("exploded: testing"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(logged.contains("app/index.ts:27:"), "{logged}");

    // Stored compiled: after a restart the same modules answer, and the source is the original.
    let server = server.restart();
    assert_eq!(
        server.get("/fn/app/?name=again").json()["message"],
        "Hi, again!"
    );
    let info = server.get("/api/functions/app").json();
    assert_eq!(info["language"], "typescript");
    assert_eq!(info["entry"], "index.ts");
    assert_eq!(
        info["files"],
        json!(["config.json", "index.ts", "lib/greet.ts", "lib/version.ts"])
    );
    assert!(info["source"].as_str().unwrap().contains("interface Env"));
}

#[test]
fn a_single_typescript_file_deploys_by_content_type_or_extension() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let source = b"export default (e: { n: number }): { twice: number } => ({ twice: e.n * 2 });";
    for (path, content_type) in [
        ("/api/functions/a", "application/typescript"),
        ("/api/functions/b?lang=ts", "text/plain"),
        ("/api/functions/c?entry=main.ts", "application/octet-stream"),
    ] {
        let reply = server.put(path, content_type, source);
        assert_eq!(reply.status, 201, "{path}: {}", reply.text());
        assert_eq!(reply.json()["language"], "typescript");
    }
    for name in ["a", "b", "c"] {
        assert_eq!(
            server.post(&format!("/fn/{name}/"), r#"{"n":21}"#).text(),
            r#"{"twice":42}"#
        );
    }
}

#[test]
fn bad_modules_are_refused_at_deploy_naming_the_file() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let deploy = |files: serde_json::Value| {
        let manifest = json!({ "entry": "index.ts", "files": files });
        let reply = server.put(
            "/api/functions/bad",
            "application/json",
            manifest.to_string().as_bytes(),
        );
        assert_eq!(reply.status, 400, "{}", reply.text());
        reply.json()["error"].clone()
    };

    let error = deploy(json!({ "index.ts": "import _ from \"lodash\";\nexport default () => _;" }));
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("'lodash'") && message.contains("index.ts"),
        "{error}"
    );
    assert_eq!(
        (error["file"].as_str(), error["line"].as_u64()),
        (Some("index.ts"), Some(1))
    );

    let error = deploy(json!({
        "index.ts": "export { a } from \"./lib/a.ts\";\nexport default () => 1;",
        "lib/a.ts": "\nimport { b } from \"./missing.ts\";\nexport const a = b;",
    }));
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("./missing.ts") && message.contains("lib/a.ts"),
        "{error}"
    );
    assert_eq!(
        (error["file"].as_str(), error["line"].as_u64()),
        (Some("lib/a.ts"), Some(2))
    );

    let error = deploy(json!({ "index.ts": "export default (x: number) => {\n  return x +;\n};" }));
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("SyntaxError"),
        "{error}"
    );
    assert_eq!(
        (error["file"].as_str(), error["line"].as_u64()),
        (Some("index.ts"), Some(2))
    );

    let error = deploy(json!({
        "index.ts": "import d from \"./d.json\";\nexport default () => d;",
        "d.json": "{}",
    }));
    assert!(
        error["message"].as_str().unwrap().contains("type"),
        "{error}"
    );

    assert_eq!(server.get("/api/functions/bad").status, 404);
}
