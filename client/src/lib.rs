//! A blocking Rust client of the functions-host HTTP API (DESIGN.md): what the CLI's commands
//! and the end-to-end tests talk to a server with.
//!
//! ```no_run
//! let client = functions_host_client::Client::new("http://127.0.0.1:8787", None);
//! client.deploy_source("hello", "application/javascript", b"export default () => 'hi'")?;
//! let reply = client.invoke("hello", b"{}")?;
//! assert_eq!(reply.text(), "\"hi\"");
//! # Ok::<(), anyhow::Error>(())
//! ```

#![warn(missing_docs)]

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

/// An operation of the HTTP API as `openapi.json` names it: a method and a path template.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The path, with `{param}` segments.
    pub template: &'static str,
}

impl Route {
    /// `method` at `template`.
    pub const fn new(method: &'static str, template: &'static str) -> Self {
        Self { method, template }
    }

    /// The path with `params` in place of the template's `{...}` segments, in order (each
    /// percent-encoded as a path segment).
    pub fn path(&self, params: &[&str]) -> String {
        let mut params = params.iter();
        self.template
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    encode_segment(params.next().copied().unwrap_or_default())
                } else {
                    segment.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// `segment` with the bytes a path segment may not hold percent-encoded.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The routes this client uses.
pub mod routes {
    use super::Route;

    /// Runs a function (`{path}` is the rest of the URL: empty for the function's root).
    pub const INVOKE: Route = Route::new("POST", "/fn/{name}/{path}");
    /// Deploys a new version.
    pub const DEPLOY: Route = Route::new("PUT", "/api/functions/{name}");
    /// Every function.
    pub const LIST: Route = Route::new("GET", "/api/functions");
    /// One function, with its code.
    pub const GET: Route = Route::new("GET", "/api/functions/{name}");
    /// Deletes a function.
    pub const DELETE: Route = Route::new("DELETE", "/api/functions/{name}");
    /// Queues an asynchronous call.
    pub const CALL: Route = Route::new("POST", "/api/functions/{name}/calls");
    /// A call's result.
    pub const RESULT: Route = Route::new("GET", "/api/calls/{call_id}");
    /// A new call address.
    pub const TOKEN: Route = Route::new("POST", "/api/functions/{name}/token");
    /// Log lines.
    pub const LOGS: Route = Route::new("GET", "/api/functions/{name}/logs");

    /// All of the above.
    pub const ALL: [Route; 9] = [INVOKE, DEPLOY, LIST, GET, DELETE, CALL, RESULT, TOKEN, LOGS];
}

/// A server's base URL (e.g. `http://127.0.0.1:8787`) and the API key to present.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// Sent as `Authorization: Bearer KEY`.
    api_key: Option<String>,
}

/// A response, whatever its status.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The headers, in order (names in lower case).
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Reply {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).context("the server's answer is not JSON")
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The message of a JSON error body (`{"error":{"message"}}`) with its source position or
    /// stack and the status, or the body as text: what a person needs to read.
    pub fn error_message(&self) -> String {
        match self.json() {
            Ok(v) => {
                let error = &v["error"];
                let mut message = error["message"].as_str().unwrap_or("").to_owned();
                // A position of line 0 is none (an error of the whole function).
                if let (Some(line @ 1..), Some(column)) =
                    (error["line"].as_u64(), error["column"].as_u64())
                {
                    let file = error["file"].as_str().unwrap_or("");
                    message = format!("{message}\n    at {file}:{line}:{column}");
                }
                if let Some(stack) = error["stack"].as_str().filter(|s| !s.is_empty()) {
                    message = stack.to_owned();
                }
                format!("{} ({})", message, self.status)
            }
            Err(_) => format!("{} ({})", self.text(), self.status),
        }
    }

    /// This reply if its status is 2xx, else an error carrying the server's message.
    pub fn success(self) -> anyhow::Result<Self> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(anyhow::anyhow!(self.error_message()))
        }
    }
}

impl Client {
    /// A client of the server at `base`, presenting `api_key` if given.
    pub fn new(base: &str, api_key: Option<&str>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            agent: ureq::AgentBuilder::new().build(),
            api_key: api_key.map(str::to_owned),
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `method path` with extra `headers` and an optional body; any status is a reply,
    /// only a server that cannot be reached is an error.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> anyhow::Result<Reply> {
        let url = format!("{}{}", self.base, path);
        let mut request = self.agent.request(method, &url);
        if let Some(key) = &self.api_key {
            request = request.set("authorization", &format!("Bearer {key}"));
        }
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let result = match body {
            Some(bytes) => request.send_bytes(bytes),
            None => request.call(),
        };
        let response = match result {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(err) => {
                return Err(anyhow::anyhow!(
                    "cannot reach the server at {}: {err}",
                    self.base
                ));
            }
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|name| {
                let value = response.header(&name)?.to_owned();
                Some((name, value))
            })
            .collect();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut body)?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Sends `method path` with an optional body of a content type.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> anyhow::Result<Reply> {
        match body {
            Some((content_type, bytes)) => {
                self.request(method, path, &[("content-type", content_type)], Some(bytes))
            }
            None => self.request(method, path, &[], None),
        }
    }

    /// Like [`Client::send`], but a non-2xx answer is an error carrying the server's message.
    pub fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> anyhow::Result<Reply> {
        self.send(method, path, body)?.success()
    }

    /// Like [`Client::expect`], for `route` with its `params` and a `query` (empty, or from `?`).
    fn expect_at(
        &self,
        route: Route,
        params: &[&str],
        query: &str,
        body: Option<(&str, &[u8])>,
    ) -> anyhow::Result<Reply> {
        let path = format!("{}{query}", route.path(params));
        self.expect(route.method, &path, body)
    }

    /// Deploys a JSON manifest as function `name`; the server's description of it.
    pub fn deploy_manifest(&self, name: &str, manifest: &Value) -> anyhow::Result<Value> {
        let body = serde_json::to_vec(manifest)?;
        self.deploy_source(name, "application/json", &body)
    }

    /// Deploys one source file or binary of `content_type` as function `name`.
    pub fn deploy_source(
        &self,
        name: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<Value> {
        self.expect_at(routes::DEPLOY, &[name], "", Some((content_type, body)))?
            .json()
    }

    /// Invokes function `name` with a JSON payload (none when empty); the reply, whatever its
    /// status.
    pub fn invoke(&self, name: &str, payload: &[u8]) -> anyhow::Result<Reply> {
        let body = (!payload.is_empty()).then_some(("application/json", payload));
        let route = routes::INVOKE;
        self.send(route.method, &route.path(&[name, ""]), body)
    }

    /// Queues an asynchronous call of `name`; its id.
    pub fn call(&self, name: &str, payload: &[u8]) -> anyhow::Result<String> {
        let reply = self.expect_at(
            routes::CALL,
            &[name],
            "",
            Some(("application/json", payload)),
        )?;
        let id = reply.json()?["call_id"].as_str().map(str::to_owned);
        id.context("the server answered no call_id")
    }

    /// Call `id`'s result, waiting up to `wait`: `None` while it is pending or running, else
    /// its reply (a failed call's is its error, `X-Call-State: failed`).
    pub fn result(&self, id: &str, wait: Duration) -> anyhow::Result<Option<Reply>> {
        let route = routes::RESULT;
        let path = format!("{}?wait={}", route.path(&[id]), wait.as_secs_f64());
        let reply = self.send(route.method, &path, None)?;
        Ok((reply.status != 202).then_some(reply))
    }

    /// Every deployed function, as the server describes them.
    pub fn list(&self) -> anyhow::Result<Vec<Value>> {
        let reply = self.expect_at(routes::LIST, &[], "", None)?;
        Ok(reply.json()?["functions"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Function `name`'s description, with its source and env names.
    pub fn get(&self, name: &str) -> anyhow::Result<Value> {
        self.expect_at(routes::GET, &[name], "", None)?.json()
    }

    /// Deletes function `name`.
    pub fn delete(&self, name: &str) -> anyhow::Result<()> {
        self.expect_at(routes::DELETE, &[name], "", None)?;
        Ok(())
    }

    /// Gives function `name` a new call address; the new `call_url`.
    pub fn rotate_token(&self, name: &str) -> anyhow::Result<String> {
        let reply = self.expect_at(routes::TOKEN, &[name], "", None)?;
        let url = reply.json()?["call_url"].as_str().map(str::to_owned);
        url.context("the server answered no call_url")
    }

    /// Up to `limit` of function `name`'s log lines after line `after`, oldest first; when
    /// there are none yet, waits up to `wait` for one.
    pub fn logs(
        &self,
        name: &str,
        after: i64,
        limit: u32,
        wait: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        let query = format!("?after={after}&limit={limit}&wait={}", wait.as_secs_f64());
        let reply = self.expect_at(routes::LOGS, &[name], &query, None)?;
        Ok(reply.json()?["logs"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fill_templates_and_encode_segments() {
        assert_eq!(routes::INVOKE.path(&["hello", ""]), "/fn/hello/");
        assert_eq!(routes::RESULT.path(&["c 1/2"]), "/api/calls/c%201%2F2");
        assert_eq!(routes::LIST.path(&[]), "/api/functions");
    }

    /// The server's description of its API: every route this client uses must be in it.
    #[test]
    fn every_route_the_client_uses_is_documented() {
        let doc: Value = serde_json::from_str(include_str!("../../http/openapi.json")).unwrap();
        for route in routes::ALL {
            let operation = &doc["paths"][route.template][route.method.to_lowercase()];
            assert!(
                operation.is_object(),
                "{} {} is not in http/openapi.json",
                route.method,
                route.template
            );
        }
    }
}
