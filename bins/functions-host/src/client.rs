//! A small blocking HTTP client for the CLI's commands against a running server.

use anyhow::Context;
use serde_json::Value;

/// A server's base URL, e.g. `http://127.0.0.1:8787`.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// Sent as `Authorization: Bearer KEY`.
    api_key: Option<String>,
}

/// A response: status and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).context("the server's answer is not JSON")
    }

    /// The message of a JSON error body (`{"error":{"message"}}`), or the body as text.
    pub fn error_message(&self) -> String {
        match self.json() {
            Ok(v) => {
                let error = &v["error"];
                let mut message = error["message"].as_str().unwrap_or("").to_owned();
                if let (Some(line), Some(column)) =
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
            Err(_) => format!("{} ({})", String::from_utf8_lossy(&self.body), self.status),
        }
    }
}

impl Client {
    pub fn new(base: &str, api_key: Option<&str>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            agent: ureq::AgentBuilder::new().build(),
            api_key: api_key.map(str::to_owned),
        }
    }

    /// Sends `method path` with an optional body and content type.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> anyhow::Result<Reply> {
        let url = format!("{}{}", self.base, path);
        let mut request = self.agent.request(method, &url);
        if let Some(key) = &self.api_key {
            request = request.set("authorization", &format!("Bearer {key}"));
        }
        let result = match body {
            Some((content_type, bytes)) => {
                request.set("content-type", content_type).send_bytes(bytes)
            }
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
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut body)?;
        Ok(Reply { status, body })
    }

    /// Like [`Client::send`], but a non-2xx answer is an error carrying the server's message.
    pub fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> anyhow::Result<Reply> {
        let reply = self.send(method, path, body)?;
        if reply.is_success() {
            Ok(reply)
        } else {
            Err(anyhow::anyhow!(reply.error_message()))
        }
    }
}
