//! Helpers shared by the engine's integration tests.
#![allow(dead_code, reason = "each test binary uses its own subset")]

use std::collections::BTreeMap;

use functions_runtime::Engine;
use functions_runtime::EngineConfig;
use functions_runtime::Function;
use functions_runtime::Isolation;
use functions_runtime::Limits;
use functions_runtime::Module;
use functions_runtime::Request;
use functions_runtime::Response;
use functions_runtime::Settings;

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

/// A one-module function (`index.js` = `source`) whose `fetch` may reach `allow_net`.
pub fn with_net(name: &str, source: &str, allow_net: &[String]) -> Function {
    Function::new(
        name,
        1,
        "index.js",
        BTreeMap::from([("index.js".to_owned(), Module::javascript(source))]),
        Settings {
            allow_net: allow_net.to_vec(),
            ..Settings::default()
        },
    )
}

/// A one-module function (`index.js` = `source`) with `limits` and `isolation`.
pub fn limited(name: &str, source: &str, limits: Limits, isolation: Isolation) -> Function {
    Function::new(
        name,
        1,
        "index.js",
        BTreeMap::from([("index.js".to_owned(), Module::javascript(source))]),
        Settings {
            limits,
            isolation,
            ..Settings::default()
        },
    )
}
