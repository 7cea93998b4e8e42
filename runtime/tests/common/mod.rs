//! Helpers shared by the engine's integration tests.
#![allow(dead_code, reason = "each test binary uses its own subset")]

use functions_runtime::Engine;
use functions_runtime::EngineConfig;
use functions_runtime::Function;
use functions_runtime::Request;
use functions_runtime::Response;

pub fn engine() -> Engine {
    Engine::new(EngineConfig {
        workers: 2,
        ..EngineConfig::default()
    })
}

pub async fn run(engine: &Engine, function: &Function, request: Request) -> Response {
    let outcome = engine.invoke(function, request).await;
    match outcome.result {
        Ok(response) => response,
        Err(err) => panic!("invocation failed: {err:?}"),
    }
}

pub fn text(response: &Response) -> &str {
    let body = response
        .body
        .as_full()
        .expect("a whole (not streamed) body");
    std::str::from_utf8(body).unwrap()
}

pub fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
