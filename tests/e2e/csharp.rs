//! C# functions end to end: compiled by the CLI with mcs (which `tests/setup.sh` installs),
//! deployed to the real server, called over HTTP, through a binding and asynchronously,
//! restored from their memory snapshots.
//!
//! The .NET runtime is downloaded once per build directory (never taken from a developer's
//! cache) and given to the servers as a local copy (`FUNCTIONS_HOST_DOTNET_RUNTIME`).

use std::path::Path;
use std::path::PathBuf;

use serde_json::Value;
use serde_json::json;

use crate::harness::Server;
use crate::harness::dotnet_runtime;
use crate::harness::repository;

fn start(data: &Path) -> Server {
    Server::start_with(
        data,
        &[],
        &[(
            "FUNCTIONS_HOST_DOTNET_RUNTIME",
            dotnet_runtime().to_str().unwrap(),
        )],
    )
}

/// Methods of every kind the tests call (C# 7.2, as mcs compiles it).
const SHOP: &str = r#"
using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading.Tasks;

public class Order { public string Item; public int Quantity; }

public static class Shop
{
    public static int Add(int a, int b = 10) { return a + b; }

    public static Dictionary<string, object> Summarize(List<Order> orders, string note)
    {
        string[] words = Regex.Matches(note ?? "", @"\w+").Cast<Match>()
            .Select(m => m.Value.ToUpperInvariant()).ToArray();
        return new Dictionary<string, object> {
            { "total", orders.Sum(o => o.Quantity) },
            { "items", orders.Select(o => o.Item).Distinct().OrderBy(i => i).ToArray() },
            { "words", words },
        };
    }

    public static async Task<string> Later(string name)
    {
        await Task.Delay(20);
        return "later, " + name;
    }

    public static string Fail(string why)
    {
        Console.Error.WriteLine("about to fail");
        throw new InvalidOperationException("refused: " + why);
    }

    public static int Spin()
    {
        long turns = 0;
        while (true) { turns++; }
    }

    public static string Setting(string name) { return Environment.GetEnvironmentVariable(name); }

    public static int Hog()
    {
        List<byte[]> blocks = new List<byte[]>();
        while (true) { blocks.Add(new byte[8 << 20]); }
    }

    public static async Task<int> Sleep()
    {
        await Task.Delay(60000);
        return 1;
    }
}
"#;

/// `SHOP` written to `Shop.cs` in `dir`.
fn shop_source(dir: &Path) -> PathBuf {
    let path = dir.join("Shop.cs");
    std::fs::write(&path, SHOP).unwrap();
    path
}

/// Deploys `Shop.cs` as `name`, its entry `Shop.METHOD`, with more CLI flags.
fn deploy_shop(server: &Server, source: &Path, name: &str, method: &str, more: &[&str]) {
    let entry = format!("Shop.{method}");
    let mut args = vec![
        "deploy",
        source.to_str().unwrap(),
        "--name",
        name,
        "--entry",
        &entry,
    ];
    args.extend_from_slice(more);
    let out = server.cli(&args);
    assert!(
        out.contains(&format!("Deployed {name} version 1 (csharp)")),
        "{out}"
    );
}

#[test]
fn csharp_methods_bind_events_log_fail_and_are_stopped_over_http() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());

    // The example, deployed with the CLI: its only public static method is the entry, and the
    // event binds by name, by position or as the one value.
    let example = repository().join("examples/csharp/Hello.cs");
    let out = server.cli(&["deploy", example.to_str().unwrap()]);
    assert!(out.contains("Deployed Hello version 1 (csharp)"), "{out}");
    for event in [r#"{"name":"Ada"}"#, r#"["Ada"]"#, r#""Ada""#] {
        let reply = server.post("/fn/Hello/", event);
        assert_eq!(
            (reply.status, reply.text()),
            (200, r#""Hello, Ada!""#.to_owned()),
            "{event}"
        );
    }
    // A request without the argument says which is missing.
    let reply = server.get("/fn/Hello/");
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply.error_message().contains("missing argument name"),
        "{}",
        reply.text()
    );
    // Console output went to the function's logs; booting the runtime wrote nothing there.
    let lines = server.log_lines("Hello");
    assert_eq!(
        lines.iter().filter(|l| *l == "greeting Ada").count(),
        3,
        "{lines:?}"
    );
    let info = server.get("/api/functions/Hello").json();
    assert_eq!(info["language"], "csharp");
    assert_eq!(info["entry"], "Hello.dll");
    assert!(info["csharp"]["snapshot_bytes"].as_u64().unwrap() > 1_000_000);

    let project = tempfile::tempdir().unwrap();
    let source = shop_source(project.path());
    deploy_shop(&server, &source, "add", "Add", &[]);
    assert_eq!(server.post("/fn/add/", r#"{"a":1,"b":2}"#).text(), "3");
    assert_eq!(server.post("/fn/add/", "[4]").text(), "14");
    let reply = server.post("/fn/add/", r#"{"b":2}"#);
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply.error_message().contains("missing argument a"),
        "{}",
        reply.text()
    );
    let reply = server.post("/fn/add/", r#"{"a":"one"}"#);
    assert_eq!(reply.status, 400, "{}", reply.text());

    // LINQ, Regex, a list of objects and a dictionary.
    deploy_shop(&server, &source, "summarize", "Summarize", &[]);
    let event = json!({
        "orders": [{"item": "pear", "quantity": 2}, {"item": "fig", "quantity": 3}, {"item": "pear", "quantity": 1}],
        "note": "ship it, soon",
    });
    let reply = server.post("/fn/summarize/", &event.to_string());
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"total": 6, "items": ["fig", "pear"], "words": ["SHIP", "IT", "SOON"]})
    );

    // A Task<T> is awaited.
    deploy_shop(&server, &source, "later", "Later", &[]);
    assert_eq!(
        server.post("/fn/later/", r#""Bo""#).text(),
        r#""later, Bo""#
    );

    // An exception is a 500 with its type, message and the method's own frames.
    deploy_shop(&server, &source, "fail", "Fail", &[]);
    let reply = server.post("/fn/fail/", r#""no stock""#);
    assert_eq!(reply.status, 500, "{}", reply.text());
    let error = reply.json();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused: no stock"),
        "{error}"
    );
    let stack = error["error"]["stack"].as_str().unwrap_or_default();
    assert!(
        stack.contains("System.InvalidOperationException"),
        "{stack}"
    );
    assert!(stack.contains("Shop.Fail"), "{stack}");
    assert!(!stack.contains("FunctionsHost.Dispatcher"), "{stack}");
    assert!(
        server
            .log_lines("fail")
            .contains(&"about to fail".to_owned())
    );

    // The function's environment variables, set at each start (none are in its snapshot).
    deploy_shop(
        &server,
        &source,
        "setting",
        "Setting",
        &["--env", "REGION=north-7"],
    );
    assert_eq!(
        server.post("/fn/setting/", r#""REGION""#).text(),
        r#""north-7""#
    );

    // Each function's snapshot was made from one baseline of the runtime and the dispatcher.
    assert_eq!(
        server.get("/healthz").json()["csharp"]["snapshots_made"],
        7,
        "the baseline and six functions"
    );

    // An endless loop is stopped at its CPU limit while other calls are answered.
    deploy_shop(
        &server,
        &source,
        "spin",
        "Spin",
        &["--limit", "cpu_ms=1000"],
    );
    let base = server.base.clone();
    let spinning = std::thread::spawn(move || {
        crate::harness::request(
            &base,
            "POST",
            "/fn/spin/",
            Some(("application/json", b"[]")),
        )
    });
    server.wait_for_busy_worker();
    let reply = server.post("/fn/add/", "[1,1]");
    assert_eq!((reply.status, reply.text()), (200, "2".to_owned()));
    let spun = spinning.join().unwrap();
    assert_eq!(spun.status, 504, "{}", spun.text());
    assert_eq!(server.post("/fn/Hello/", r#""again""#).status, 200);

    // So is one that takes all the memory it may, and one that waits past its wall-clock limit.
    deploy_shop(&server, &source, "hog", "Hog", &[]);
    let reply = server.post("/fn/hog/", "[]");
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "memory_limit");
    deploy_shop(
        &server,
        &source,
        "sleep",
        "Sleep",
        &["--limit", "wall_clock_ms=1000"],
    );
    let reply = server.post("/fn/sleep/", "[]");
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(server.post("/fn/Hello/", r#""still""#).status, 200);

    // An asynchronous call.
    let reply = server.post("/api/functions/later/calls", r#"{"name":"queued"}"#);
    assert_eq!(reply.status, 202, "{}", reply.text());
    let id = reply.json()["call_id"].as_str().unwrap().to_owned();
    let result = server.get(&format!("/api/calls/{id}?wait=60"));
    assert_eq!(
        (result.status, result.text()),
        (200, r#""later, queued""#.to_owned())
    );
}

/// `SHOP` compiled by mcs into `Shop.dll` in `dir`, as a user with a build of their own would.
fn prebuilt(dir: &Path) -> PathBuf {
    let source = shop_source(dir);
    let dll = dir.join("Shop.dll");
    let status = std::process::Command::new("mcs")
        .args(["-target:library", "-langversion:7.2"])
        .arg(format!("-out:{}", dll.display()))
        .arg(&source)
        .status()
        .expect("mcs runs (tests/setup.sh installs Debian's mono-mcs)");
    assert!(status.success());
    dll
}

#[test]
fn csharp_assemblies_deploy_prebuilt_answer_bindings_and_keep_their_snapshots() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());
    let project = tempfile::tempdir().unwrap();
    let dll = prebuilt(project.path());
    let out = server.cli(&[
        "deploy",
        dll.to_str().unwrap(),
        "--name",
        "shop",
        "--entry",
        "Shop.Add",
    ]);
    assert!(out.contains("Deployed shop version 1 (csharp)"), "{out}");
    assert_eq!(server.post("/fn/shop/", "[20, 1]").text(), "21");
    assert_eq!(
        server.get("/api/functions/shop").json()["entry"],
        "Shop.dll:Shop.Add"
    );

    // Another function calls the class's public static methods through a binding.
    let caller = json!({
        "files": { "index.js": r#"export default async (event, env) => {
            const caught = async (call) => { try { await call(); } catch (err) { return [err.name, err.message]; } };
            return {
              add: await env.SHOP.Add(2, 3),
              camel: await env.SHOP.add(4),
              later: await env.SHOP.later("rpc"),
              summary: await env.SHOP.summarize([{ item: "fig", quantity: 2 }], "a b"),
              failed: await caught(() => env.SHOP.fail("by binding")),
            };
          }"# },
        "bindings": { "SHOP": { "function": "shop" } },
    });
    let reply = server.put(
        "/api/functions/caller",
        "application/json",
        caller.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let reply = server.post("/fn/caller/", "{}");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({
            "add": 5,
            "camel": 14,
            "later": "later, rpc",
            "summary": {"total": 2, "items": ["fig"], "words": ["A", "B"]},
            "failed": ["System.InvalidOperationException", "refused: by binding"],
        })
    );

    // A restarted server restores the stored snapshot, making none.
    let server = server.restart();
    assert_eq!(server.post("/fn/shop/", "[1, 2]").text(), "3");
    assert_eq!(server.get("/healthz").json()["csharp"]["snapshots_made"], 0);
    // One it cannot restore (as after an upgrade of the runtime or the host) is made again
    // as it starts, and stored.
    let db = rusqlite::Connection::open(data.path().join("functions.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE runtime_code SET snapshot = x'00' WHERE name = 'shop'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    let server = server.restart();
    assert_eq!(server.get("/healthz").json()["csharp"]["snapshots_made"], 1);
    assert_eq!(server.post("/fn/shop/", "[2, 2]").text(), "4");
    let server = server.restart();
    assert_eq!(server.get("/healthz").json()["csharp"]["snapshots_made"], 0);
    assert_eq!(server.post("/fn/shop/", "[3, 2]").text(), "5");

    // What cannot run is refused at deploy, saying why.
    let refused = |manifest: Value, needle: &str| {
        let reply = server.put(
            "/api/functions/refused",
            "application/json",
            manifest.to_string().as_bytes(),
        );
        assert_eq!(reply.status, 400, "{}", reply.text());
        assert!(reply.error_message().contains(needle), "{}", reply.text());
    };
    use base64::Engine as _;
    let assembly = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&dll).unwrap());
    refused(
        json!({"language": "csharp", "files": {"Shop.dll": assembly}}),
        "FunctionsHost.Dispatcher.dll",
    );
    refused(
        json!({"language": "csharp", "files": {"Shop.cs": SHOP}}),
        "functions-host deploy",
    );
    let out = server.cli_fails(&[
        "deploy",
        dll.to_str().unwrap(),
        "--name",
        "refused",
        "--entry",
        "Shop.Nothing",
    ]);
    assert!(out.contains("has no public static method Nothing"), "{out}");
    let reply = server.put(
        "/api/functions/refused?lang=csharp",
        "text/plain",
        SHOP.as_bytes(),
    );
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply.error_message().contains("deployed compiled"),
        "{}",
        reply.text()
    );
    assert_eq!(server.get("/api/functions/refused").status, 404);
}

#[test]
fn csharp_without_a_compiler_names_both_and_how_to_install_them() {
    let project = tempfile::tempdir().unwrap();
    let source = shop_source(project.path());
    let empty = tempfile::tempdir().unwrap();
    let out = crate::harness::cli_fails_with(
        &["deploy", source.to_str().unwrap()],
        &[("PATH", empty.path().to_str().unwrap())],
    );
    assert!(out.contains("dotnet"), "{out}");
    assert!(out.contains("apt install mono-mcs"), "{out}");
}
