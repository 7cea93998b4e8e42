//! Bindings at deploy: a function names the functions it may call, each of which must be
//! deployed (and, with API keys, the deployer's) when it is deployed; the API shows them.

use functions_host_client::Client;
use functions_host_client::Reply;
use serde_json::Value;
use serde_json::json;

use crate::harness;
use crate::harness::Server;

/// A JavaScript function's manifest, with `bindings`.
fn manifest(bindings: Value) -> Value {
    json!({
        "files": { "index.js": "export default { async fetch() { return new Response('ok') } }" },
        "bindings": bindings,
    })
}

/// Deploys `manifest` as `name` through `client`: the reply, whatever its status.
fn put(client: &Client, name: &str, manifest: &Value) -> Reply {
    client
        .send(
            "PUT",
            &format!("/api/functions/{name}"),
            Some(("application/json", manifest.to_string().as_bytes())),
        )
        .unwrap()
}

/// The status, error code and error message of a refused deploy.
fn refusal(reply: &Reply) -> (u16, String, String) {
    let body = reply.json().unwrap();
    let field = |key: &str| body["error"][key].as_str().unwrap_or("").to_owned();
    (reply.status, field("code"), field("message"))
}

/// What `binding` to `target` is refused with when `target` is not there for the deployer.
fn not_deployed(binding: &str, target: &str) -> (u16, String, String) {
    (
        400,
        "bad_request".to_owned(),
        format!("binding {binding:?}: no function named {target:?} is deployed"),
    )
}

#[test]
fn bindings_reach_deployed_functions_and_are_shown() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let client = Client::new(&server.base, None);
    let bindings = json!({ "MATH": { "function": "math" } });

    // Not deployed yet: refused, and nothing is stored.
    let reply = put(&client, "caller", &manifest(bindings.clone()));
    assert_eq!(refusal(&reply), not_deployed("MATH", "math"));
    assert_eq!(server.get("/api/functions/caller").status, 404);

    client
        .deploy_manifest("math", &manifest(json!({})))
        .unwrap();
    let deployed = client
        .deploy_manifest("caller", &manifest(bindings.clone()))
        .unwrap();
    assert_eq!(deployed["version"], 1);
    assert_eq!(client.get("caller").unwrap()["bindings"], bindings);
    assert_eq!(client.get("math").unwrap()["bindings"], json!({}));

    // A function may be bound to itself (the runtime refuses cycles as they are called), even
    // on its first deploy.
    let itself = json!({ "SELF": { "function": "loop" }, "MATH": { "function": "math" } });
    client
        .deploy_manifest("loop", &manifest(itself.clone()))
        .unwrap();

    // One missing target is enough to refuse the version; the one before stays current.
    let reply = put(
        &client,
        "caller",
        &manifest(json!({ "MATH": { "function": "math" }, "GONE": { "function": "gone" } })),
    );
    assert_eq!(refusal(&reply), not_deployed("GONE", "gone"));
    let current = client.get("caller").unwrap();
    assert_eq!(
        (&current["version"], &current["bindings"]),
        (&json!(1), &bindings)
    );

    // Bindings are part of the stored version.
    let server = server.restart();
    let client = Client::new(&server.base, None);
    assert_eq!(client.get("caller").unwrap()["bindings"], bindings);
    assert_eq!(client.get("loop").unwrap()["bindings"], itself);
}

#[test]
fn a_binding_reaches_only_the_deployers_functions() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        data.path(),
        &[],
        &[("FUNCTIONS_HOST_API_KEYS", "alpha, beta, root admin")],
    );
    let (alpha, beta, root) = (
        Client::new(&server.base, Some("alpha")),
        Client::new(&server.base, Some("beta")),
        Client::new(&server.base, Some("root")),
    );
    alpha.deploy_manifest("math", &manifest(json!({}))).unwrap();
    let to_math = manifest(json!({ "MATH": { "function": "math" } }));

    // To beta, alpha's function is not deployed: the same refusal as for a missing one.
    let reply = put(&beta, "caller", &to_math);
    assert_eq!(refusal(&reply), not_deployed("MATH", "math"));
    let missing = put(
        &beta,
        "caller",
        &manifest(json!({ "MATH": { "function": "nowhere" } })),
    );
    assert_eq!(refusal(&missing), not_deployed("MATH", "nowhere"));
    assert!(beta.list().unwrap().is_empty());

    // Alpha binds its own function, and an admin key any.
    alpha.deploy_manifest("caller", &to_math).unwrap();
    root.deploy_manifest("admin-caller", &to_math).unwrap();
    assert_eq!(
        alpha.get("caller").unwrap()["bindings"],
        json!({ "MATH": { "function": "math" } })
    );
}

#[test]
fn cli_deploy_binds_with_bind_flags() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let hello = harness::fixture_path("hello.js");
    let hello = hello.to_str().unwrap();
    server.cli(&["deploy", hello, "--name", "math"]);
    let out = server.cli(&[
        "deploy",
        hello,
        "--name",
        "caller",
        "--bind",
        "MATH=math",
        "--bind",
        "AGAIN=math",
    ]);
    assert!(out.contains("Deployed caller version 1"), "{out}");
    assert_eq!(
        server.get("/api/functions/caller").json()["bindings"],
        json!({ "MATH": { "function": "math" }, "AGAIN": { "function": "math" } })
    );

    let bad = server.cli_fails(&["deploy", hello, "--name", "caller", "--bind", "MATH"]);
    assert!(
        bad.contains(r#"--bind "MATH" is not NAME=FUNCTION"#),
        "{bad}"
    );
    let bad = server.cli_fails(&["deploy", hello, "--name", "caller", "--bind", "=math"]);
    assert!(
        bad.contains(r#"--bind "=math" is not NAME=FUNCTION"#),
        "{bad}"
    );
    // The server's refusals come back as they are.
    let bad = server.cli_fails(&["deploy", hello, "--name", "caller", "--bind", "1x=math"]);
    assert!(
        bad.contains(r#"binding name "1x" is not an identifier"#),
        "{bad}"
    );
    let bad = server.cli_fails(&["deploy", hello, "--name", "caller", "--bind", "M=missing"]);
    assert!(
        bad.contains(r#"binding "M": no function named "missing" is deployed (400)"#),
        "{bad}"
    );
}
