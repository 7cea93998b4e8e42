//! After the response: streamed bodies and `ctx.waitUntil`.

use std::io::Read;
use std::io::Write;
use std::net::TcpListener;
use std::sync::mpsc;

use functions_runtime::LogLevel;
use functions_runtime::Request;
use functions_runtime::ResponseBody;

mod common;
use common::engine;
use common::with_net;

/// An HTTP server on an ephemeral port that answers its first request only when `release` is
/// sent: a function waiting on it is provably still running. Returns its `host:port`.
fn gated_upstream() -> (String, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (release, released) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0; 4096];
        let _ = stream.read(&mut buf).unwrap();
        released.recv().unwrap();
        let body = "released";
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(reply.as_bytes()).unwrap();
    });
    (address, release)
}

#[tokio::test]
async fn the_response_arrives_before_wait_until_work_finishes() {
    let engine = engine();
    let (upstream, release) = gated_upstream();
    let source = format!(
        r#"export default {{
      fetch(request, env, ctx) {{
        ctx.waitUntil(fetch("http://{upstream}/").then((r) => r.text()).then((t) => console.log("later:", t)));
        ctx.passThroughOnException();
        return new Response("now");
      }},
    }}"#
    );
    let f = with_net("later", &source, std::slice::from_ref(&upstream));
    let outcome = engine.invoke(&f, Request::get("http://localhost/")).await;
    // The upstream has not answered yet, so the waitUntil work cannot have finished.
    let response = outcome.result.unwrap();
    assert_eq!(response.body.as_full(), Some(&b"now"[..]));
    let after_response = outcome.after_response.expect("waitUntil work is pending");
    release.send(()).unwrap();
    let finished = after_response.await;
    assert!(finished.error.is_none(), "{:?}", finished.error);
    let lines: Vec<_> = finished.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(lines, ["later: released"]);
}

#[tokio::test]
async fn a_readable_stream_body_is_streamed_chunk_by_chunk() {
    let engine = engine();
    let (upstream, release) = gated_upstream();
    // The second chunk waits for the upstream: the first must reach the reader before it.
    let source = format!(
        r#"export default {{
      fetch() {{
        const encoder = new TextEncoder();
        let step = 0;
        const body = new ReadableStream({{
          async pull(controller) {{
            step++;
            if (step === 1) controller.enqueue(encoder.encode("first;"));
            else if (step === 2) controller.enqueue(encoder.encode(await (await fetch("http://{upstream}/")).text()));
            else controller.close();
          }},
        }});
        return new Response(body, {{ headers: {{ "content-type": "text/plain" }} }});
      }},
    }}"#
    );
    let f = with_net("streamer", &source, std::slice::from_ref(&upstream));
    let outcome = engine.invoke(&f, Request::get("http://localhost/")).await;
    let response = outcome.result.unwrap();
    assert_eq!(response.status, 200);
    let ResponseBody::Stream(mut stream) = response.body else {
        panic!("the body was not streamed");
    };
    assert_eq!(stream.next().await.unwrap().unwrap(), b"first;");
    release.send(()).unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap(), b"released");
    assert!(stream.next().await.is_none());
    let finished = outcome.after_response.expect("the stream ran on").await;
    assert!(finished.error.is_none(), "{:?}", finished.error);
}

#[tokio::test]
async fn a_failing_stream_fails_the_body_and_is_reported() {
    let engine = engine();
    let f = with_net(
        "broken",
        r#"export default {
      fetch() {
        let sent = false;
        const body = new ReadableStream({
          pull(controller) {
            if (sent) throw new Error("the source dried up");
            sent = true;
            controller.enqueue(new Uint8Array([1, 2, 3]));
          },
        });
        return new Response(body);
      },
    }"#,
        &[],
    );
    let outcome = engine.invoke(&f, Request::get("http://localhost/")).await;
    let ResponseBody::Stream(mut stream) = outcome.result.unwrap().body else {
        panic!("the body was not streamed");
    };
    assert_eq!(stream.next().await.unwrap().unwrap(), [1, 2, 3]);
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(err.contains("the source dried up"), "{err}");
    let finished = outcome.after_response.unwrap().await;
    let err = finished.error.expect("the failure is reported").to_string();
    assert!(err.contains("the source dried up"), "{err}");
}

#[tokio::test]
async fn wait_until_failures_are_logged_not_thrown() {
    let engine = engine();
    let f = with_net(
        "sloppy",
        r#"export default async (event, env, ctx) => {
      ctx.waitUntil(Promise.reject(new Error("background job failed")));
      return { ok: true };
    }"#,
        &[],
    );
    let outcome = engine.invoke(&f, Request::json("{}")).await;
    assert_eq!(
        outcome.result.unwrap().body.as_full(),
        Some(&br#"{"ok":true}"#[..])
    );
    let finished = outcome.after_response.unwrap().await;
    assert!(finished.error.is_none());
    // Logged before or after the response was taken, depending on when the rejection settled.
    let logs: Vec<_> = outcome.logs.iter().chain(&finished.logs).collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].level, LogLevel::Error);
    assert!(
        logs[0].message.contains("background job failed"),
        "{logs:?}"
    );
}
