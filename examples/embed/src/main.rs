//! functions-host embedded in a Rust program, no HTTP: `cargo run -p embed-example`.
//!
//! It opens a host on SQLite in a temporary directory, deploys a TypeScript function and a
//! WebAssembly one, invokes both, makes an asynchronous call and fetches its result, reads the
//! logs, then closes the host, opens it again on the same directory and invokes again.

use std::time::Duration;

use functions_host::CallOutcome;
use functions_host::CallRequest;
use functions_host::CallStatus;
use functions_host::DeploySource;
use functions_host::Host;
use functions_host::Manifest;
use functions_host::Request;

/// A plain function: the JSON body is its event, its return value the JSON response.
const GREET_TS: &str = r#"
interface Event { name: string }
export default (event: Event) => {
  console.log(`greeting ${event.name}`);
  return { message: `Hello, ${event.name}!` };
};
"#;

/// A WASI command that writes a line to standard output (the response body).
const HELLO_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Hello from WebAssembly!\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 24))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

/// `response`'s status and body, as text.
async fn answer(response: functions_host::Response) -> anyhow::Result<String> {
    let status = response.status;
    let body = response.body.bytes().await.map_err(anyhow::Error::msg)?;
    Ok(format!("{status} {}", String::from_utf8(body)?.trim_end()))
}

/// Everything the example does; its output, line by line.
async fn run(dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let host = Host::builder().sqlite(dir).open().await?;

    let manifest = Manifest {
        files: [("index.ts".to_owned(), GREET_TS.to_owned())].into(),
        ..Manifest::default()
    };
    let greet = host
        .deploy("greet", DeploySource::Manifest(manifest))
        .await?;
    out.push(format!(
        "deployed {} version {} ({})",
        greet.name,
        greet.version,
        greet.language.as_str()
    ));
    let wasm = host
        .deploy("hello-wasm", DeploySource::Wasm(wat::parse_str(HELLO_WAT)?))
        .await?;
    out.push(format!(
        "deployed {} version {} ({})",
        wasm.name,
        wasm.version,
        wasm.language.as_str()
    ));

    let response = host
        .invoke("greet", Request::json(r#"{"name":"embedder"}"#))
        .await?;
    out.push(format!("greet: {}", answer(response).await?));
    let response = host.invoke("hello-wasm", Request::json("")).await?;
    out.push(format!("hello-wasm: {}", answer(response).await?));

    let call = CallRequest {
        content_type: Some("application/json".to_owned()),
        payload: br#"{"name":"a queued call"}"#.to_vec(),
        ..CallRequest::default()
    };
    let id = host.call("greet", call).await?;
    match host.result(&id, Duration::from_secs(30)).await? {
        CallStatus::Done(CallOutcome::Finished(result)) => out.push(format!(
            "call {}…: {} {}",
            &id[..8],
            result.status,
            String::from_utf8_lossy(&result.body)
        )),
        other => anyhow::bail!("call {id} did not finish: {other:?}"),
    }

    for line in host.logs("greet", 0, 100).await? {
        // The lifecycle lines carry the call's id, which differs from run to run.
        let message = line.message.replace(&id, "<id>");
        out.push(format!("log [{}] {message}", line.level));
    }

    drop(host);
    let host = Host::builder().sqlite(dir).open().await?;
    let response = host
        .invoke("greet", Request::json(r#"{"name":"a reopened host"}"#))
        .await?;
    out.push(format!("after reopening: {}", answer(response).await?));
    Ok(out)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for line in run(dir.path()).await? {
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "current_thread")]
    async fn the_example_runs_as_readme_shows() {
        let dir = tempfile::tempdir().unwrap();
        let out = super::run(dir.path()).await.unwrap();
        let expected = [
            "deployed greet version 1 (typescript)",
            "deployed hello-wasm version 1 (wasm)",
            r#"greet: 200 {"message":"Hello, embedder!"}"#,
            "hello-wasm: 200 Hello from WebAssembly!",
        ];
        assert_eq!(out[..4], expected);
        assert!(
            out[4].ends_with(r#"200 {"message":"Hello, a queued call!"}"#),
            "{out:?}"
        );
        assert!(
            out.contains(&"log [info] greeting embedder".to_owned()),
            "{out:?}"
        );
        assert!(
            out.iter()
                .any(|l| l.starts_with("log [info] FINISHED <id> 200")),
            "{out:?}"
        );
        assert_eq!(
            out.last().unwrap(),
            r#"after reopening: 200 {"message":"Hello, a reopened host!"}"#
        );
    }
}
