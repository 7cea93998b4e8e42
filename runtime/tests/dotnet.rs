//! C# functions on the .NET WebAssembly runtime, in the engine: compiled by mcs, booted in an
//! isolate, called through the dispatcher.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use common::engine;
use common::text;
use functions_runtime::DISPATCHER_ASSEMBLY;
use functions_runtime::DISPATCHER_SOURCE;
use functions_runtime::DotnetBuild;
use functions_runtime::DotnetCode;
use functions_runtime::Function;
use functions_runtime::InvokeError;
use functions_runtime::Request;
use functions_runtime::Settings;

/// The runtime, downloaded (once per build directory) and read.
fn build() -> Arc<DotnetBuild> {
    static BUILD: OnceLock<Arc<DotnetBuild>> = OnceLock::new();
    BUILD
        .get_or_init(|| {
            let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dotnet");
            let registry = functions_dotnet::registry_from_env(functions_dotnet::DEFAULT_REGISTRY);
            let runtime = functions_dotnet::Runtime::cached(&cache, &registry, &mut |_| {})
                .expect("the .NET runtime is downloaded");
            Arc::new(DotnetBuild::read(&runtime).expect("the runtime is read"))
        })
        .clone()
}

/// `source` compiled by mcs into the library `name`.dll.
fn compile(name: &str, source: &str, unsafe_code: bool) -> Vec<u8> {
    compile_with(name, source, unsafe_code, &[])
}

/// Like [`compile`], referring to the assemblies `references` (file name and bytes).
fn compile_with(
    name: &str,
    source: &str,
    unsafe_code: bool,
    references: &[(&str, &[u8])],
) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{name}.cs"));
    std::fs::write(&file, source).unwrap();
    let out = dir.path().join(format!("{name}.dll"));
    let mut mcs = Command::new("mcs");
    mcs.arg("-target:library")
        .arg("-langversion:7.2")
        .arg(format!("-out:{}", out.display()));
    if unsafe_code {
        mcs.arg("-unsafe");
    }
    for (file, bytes) in references {
        let path = dir.path().join(file);
        std::fs::write(&path, bytes).unwrap();
        mcs.arg(format!("-r:{}", path.display()));
    }
    let output = mcs
        .arg(&file)
        .output()
        .expect("mcs runs (tests/setup.sh installs Debian's mono-mcs)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(out).unwrap()
}

/// A C# function of `source` (the assembly `Functions`), with the dispatcher.
fn function(name: &str, source: &str, entry: Option<&str>) -> Function {
    static DISPATCHER: OnceLock<Vec<u8>> = OnceLock::new();
    let dispatcher =
        DISPATCHER.get_or_init(|| compile(DISPATCHER_ASSEMBLY, DISPATCHER_SOURCE, true));
    let assemblies = BTreeMap::from([
        (format!("{DISPATCHER_ASSEMBLY}.dll"), dispatcher.clone()),
        (
            "Functions.dll".to_owned(),
            compile("Functions", source, false),
        ),
    ]);
    let mut settings = Settings::default();
    // Booted from scratch here (no snapshot yet): the first call runs cold code.
    settings.limits.cpu_time = Duration::from_secs(10);
    settings.limits.memory_bytes = 512 * 1024 * 1024;
    let code = DotnetCode {
        build: build(),
        assemblies: Arc::new(assemblies),
        assembly: "Functions".into(),
        entry: entry.map(str::to_owned),
        snapshot: None,
    };
    Function::dotnet(name, 1, code, settings)
}

const GREETER: &str = r#"
using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading.Tasks;

public class Person { public string Name; public int Age; }

public static class Greeter
{
    public static string Hello(string name)
    {
        Console.WriteLine("greeting " + name);
        return "Hello, " + name + "!";
    }

    public static int Add(int a, int b, int c = 10) { return a + b + c; }

    public static Dictionary<string, object> Describe(Person person, List<int> scores, int? bonus)
    {
        return new Dictionary<string, object> {
            { "who", person.Name + " (" + person.Age + ")" },
            { "total", scores.Sum() + (bonus ?? 0) },
            { "words", Regex.Split("a b  c", "\\s+").Select(w => w.ToUpperInvariant()).ToArray() },
        };
    }

    public static async Task<string> Later(string name)
    {
        await Task.Delay(10);
        return "later, " + name;
    }

    public static string Fail(string why) { throw new InvalidOperationException("failed: " + why); }
}
"#;

async fn invoke(function: &Function, body: &str) -> (u16, String) {
    let outcome = engine().invoke(function, Request::json(body)).await;
    match outcome.result {
        Ok(response) => (response.status, text(&response).to_owned()),
        Err(err) => panic!("invocation failed: {err:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csharp_method_binds_the_event_and_returns_json() {
    let hello = function("hello", GREETER, Some("Greeter.Hello"));
    assert_eq!(
        invoke(&hello, r#"{"name":"Ada"}"#).await,
        (200, r#""Hello, Ada!""#.into())
    );
    assert_eq!(invoke(&hello, r#""Bo""#).await.1, r#""Hello, Bo!""#);
    assert_eq!(invoke(&hello, r#"["Cy"]"#).await.1, r#""Hello, Cy!""#);

    let add = function("add", GREETER, Some("Greeter.Add"));
    assert_eq!(invoke(&add, r#"{"a":1,"b":2}"#).await.1, "13");
    assert_eq!(invoke(&add, "[1,2,3]").await.1, "6");
    let (status, body) = invoke(&add, r#"{"a":1}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("missing argument b"), "{body}");
    let (status, body) = invoke(&add, r#"{"a":"one","b":2}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("a: "), "{body}");

    let describe = function("describe", GREETER, Some("Greeter.Describe"));
    let event = r#"{"person":{"name":"Ada","age":36},"scores":[1,2,3]}"#;
    let (status, body) = invoke(&describe, event).await;
    assert_eq!(status, 200, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"who": "Ada (36)", "total": 6, "words": ["A", "B", "C"]})
    );

    let later = function("later", GREETER, Some("Greeter.Later"));
    assert_eq!(invoke(&later, r#""Di""#).await.1, r#""later, Di""#);
}

#[tokio::test(flavor = "multi_thread")]
async fn console_output_is_logged_and_exceptions_carry_their_type_and_stack() {
    let engine = engine();
    let hello = function("hello", GREETER, Some("Greeter.Hello"));
    let outcome = engine.invoke(&hello, Request::json(r#""Ada""#)).await;
    assert!(outcome.result.is_ok());
    let lines: Vec<String> = outcome
        .logs
        .iter()
        .map(|line| line.message.clone())
        .collect();
    assert!(lines.contains(&"greeting Ada".to_owned()), "{lines:?}");

    let fail = function("fail", GREETER, Some("Greeter.Fail"));
    match engine
        .invoke(&fail, Request::json(r#""no reason""#))
        .await
        .result
    {
        Err(InvokeError::Threw { message, stack }) => {
            assert!(message.contains("failed: no reason"), "{message}");
            assert!(
                stack.contains("System.InvalidOperationException"),
                "{stack}"
            );
            assert!(stack.contains("Greeter.Fail"), "{stack}");
        }
        other => panic!("expected the exception, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_entry_must_be_one_method() {
    let engine = engine();
    let unnamed = function("unnamed", GREETER, None);
    match engine.invoke(&unnamed, Request::json("{}")).await.result {
        Err(err) => {
            let message = err.to_string();
            assert!(message.contains("5 public static methods"), "{message}");
            assert!(message.contains("--entry Class.Method"), "{message}");
        }
        Ok(_) => panic!("an assembly of five methods has no entry of its own"),
    }
}

/// `function` restored from `snapshot` instead of booting.
fn restored(function: &Function, snapshot: functions_runtime::MemorySnapshot) -> Function {
    let mut code = function.dotnet_code().unwrap().clone();
    code.snapshot = Some(Arc::new(snapshot));
    Function::dotnet(function.name(), 1, code, function.settings().clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn invocations_restore_the_functions_memory_snapshot() {
    let engine = engine();
    for (entry, event, expected) in [
        ("Greeter.Hello", r#""Ada""#, r#""Hello, Ada!""#),
        ("Greeter.Add", "[1,2]", "13"),
        ("Greeter.Later", r#""Bo""#, r#""later, Bo""#),
    ] {
        let cold = function("restored", GREETER, Some(entry));
        let snapshot = engine.snapshot_dotnet(&cold).await.expect("a snapshot");
        let warm = restored(&cold, snapshot);
        for _ in 0..2 {
            let started = std::time::Instant::now();
            let outcome = engine.invoke(&warm, Request::json(event)).await;
            let response = outcome.result.expect("restored and called");
            eprintln!("{entry} restored and called in {:?}", started.elapsed());
            assert_eq!(text(&response), expected, "{entry}");
        }
    }
    let fail = function("fail", GREETER, Some("Greeter.Fail"));
    let warm = restored(&fail, engine.snapshot_dotnet(&fail).await.unwrap());
    match engine
        .invoke(&warm, Request::json(r#""late""#))
        .await
        .result
    {
        Err(InvokeError::Threw { stack, .. }) => assert!(stack.contains("Greeter.Fail"), "{stack}"),
        other => panic!("expected the exception, got {other:?}"),
    }
    let hello = function("hello", GREETER, Some("Greeter.Hello"));
    let warm = restored(&hello, engine.snapshot_dotnet(&hello).await.unwrap());
    let outcome = engine.invoke(&warm, Request::json(r#""Cy""#)).await;
    let lines: Vec<String> = outcome
        .logs
        .iter()
        .map(|line| line.message.clone())
        .collect();
    assert!(lines.contains(&"greeting Cy".to_owned()), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_variables_are_set_at_each_start_and_kept_out_of_the_snapshot() {
    const SOURCE: &str = r#"
public static class Settings
{
    public static string Read(string name) { return System.Environment.GetEnvironmentVariable(name); }
}
"#;
    let engine = engine();
    let plain = function("env", SOURCE, Some("Settings.Read"));
    let mut settings = plain.settings().clone();
    settings.env.insert("GREETING".into(), "hush-7f3a9c".into());
    let code = plain.dotnet_code().unwrap().clone();
    let with_env = Function::dotnet("env", 1, code, settings);
    let snapshot = engine.snapshot_dotnet(&with_env).await.expect("a snapshot");
    let bytes = snapshot.to_bytes();
    let utf16: Vec<u8> = "hush-7f3a9c"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    for secret in [b"hush-7f3a9c".as_slice(), &utf16] {
        assert!(
            !bytes.windows(secret.len()).any(|window| window == secret),
            "the snapshot holds the variable's value"
        );
    }
    let warm = restored(&with_env, snapshot);
    assert_eq!(invoke(&warm, r#""GREETING""#).await.1, r#""hush-7f3a9c""#);
    assert_eq!(
        invoke(&with_env, r#""GREETING""#).await.1,
        r#""hush-7f3a9c""#
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn functions_snapshots_are_made_from_a_baseline_of_the_runtime_and_dispatcher() {
    let engine = engine();
    let hello = function("hello", GREETER, Some("Greeter.Later"));
    let code = hello.dotnet_code().unwrap();
    let dispatcher = code.assemblies[&format!("{DISPATCHER_ASSEMBLY}.dll")].clone();
    let baseline = DotnetCode::baseline(build(), dispatcher);
    let baseline = Function::dotnet("baseline", 1, baseline, hello.settings().clone());
    let started = std::time::Instant::now();
    let baseline = Arc::new(engine.snapshot_dotnet(&baseline).await.expect("a baseline"));
    eprintln!("baseline made in {:?}", started.elapsed());

    // The function's own snapshot: the baseline restored, its assembly loaded, its entry bound.
    let mut from_baseline = code.clone();
    from_baseline.snapshot = Some(baseline.clone());
    let from_baseline = Function::dotnet("hello", 1, from_baseline, hello.settings().clone());
    let started = std::time::Instant::now();
    let snapshot = engine
        .snapshot_dotnet(&from_baseline)
        .await
        .expect("a snapshot made from the baseline");
    eprintln!("the function's snapshot made in {:?}", started.elapsed());
    let warm = restored(&hello, snapshot);
    assert_eq!(invoke(&warm, r#""Ed""#).await.1, r#""later, Ed""#);
    // Invoked straight from the baseline, too.
    assert_eq!(invoke(&from_baseline, r#""Fa""#).await.1, r#""later, Fa""#);

    let missing = function("missing", GREETER, Some("Greeter.Nothing"));
    let mut code = missing.dotnet_code().unwrap().clone();
    code.snapshot = Some(baseline);
    match engine
        .snapshot_dotnet(&Function::dotnet(
            "missing",
            1,
            code,
            missing.settings().clone(),
        ))
        .await
    {
        Err(err) => assert!(
            err.to_string().contains("no public static method Nothing"),
            "{err}"
        ),
        Ok(_) => panic!("an entry that is not there was bound"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_calls_a_library_deployed_beside_it_under_any_file_name() {
    const LIBRARY: &str = "public static class Shout { public static string Loud(string s) { return s.ToUpperInvariant() + \"!\"; } }";
    const CALLER: &str = "public static class Caller { public static string Call(string s) { return Shout.Loud(s); } }";
    let engine = engine();
    let library = compile("Library", LIBRARY, false);
    let caller = compile_with("Functions", CALLER, false, &[("Library.dll", &library)]);
    let greeter = function("greeter", GREETER, None);
    let dispatcher_file = format!("{DISPATCHER_ASSEMBLY}.dll");
    let dispatcher = greeter.dotnet_code().unwrap().assemblies[&dispatcher_file].clone();
    let baseline = DotnetCode::baseline(build(), dispatcher.clone());
    let baseline = Function::dotnet("baseline", 1, baseline, greeter.settings().clone());
    let baseline = Arc::new(engine.snapshot_dotnet(&baseline).await.expect("a baseline"));
    // The caller's file is not named as its assembly: it is found by the name it gives itself.
    let code = DotnetCode {
        build: build(),
        assemblies: Arc::new(BTreeMap::from([
            (dispatcher_file, dispatcher),
            ("Library.dll".to_owned(), library),
            ("Renamed.dll".to_owned(), caller),
        ])),
        assembly: "Renamed".into(),
        entry: Some("Caller.Call".into()),
        snapshot: Some(baseline),
    };
    let from_baseline = Function::dotnet("caller", 1, code, greeter.settings().clone());
    assert_eq!(invoke(&from_baseline, r#""hey""#).await.1, r#""HEY!""#);
    let snapshot = engine
        .snapshot_dotnet(&from_baseline)
        .await
        .expect("a snapshot");
    let warm = restored(&from_baseline, snapshot);
    assert_eq!(invoke(&warm, r#""again""#).await.1, r#""AGAIN!""#);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_can_never_finish_fails_at_once() {
    const SOURCE: &str = "using System.Threading.Tasks;\npublic static class Waiter { public static Task<int> Never() { return new TaskCompletionSource<int>().Task; } }";
    let never = function("never", SOURCE, Some("Waiter.Never"));
    // Reported as it is, not as a call that ran out of wall-clock time.
    let outcome = engine().invoke(&never, Request::json("[]")).await;
    match outcome.result {
        Err(InvokeError::Hung) => {}
        other => panic!("expected the call to be reported hung, got {other:?}"),
    }
}
