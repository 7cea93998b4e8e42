//! Exports the host's spans to an OpenTelemetry collector over OTLP/HTTP with JSON bodies
//! (`POST {endpoint}/v1/traces`), in batches: up to 512 spans, or what came within a second.
//! A collector that is away loses the spans of that time (a line says so, once a minute), never
//! an invocation: spans wait in a bounded queue, and past it they are dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;
use std::time::UNIX_EPOCH;

use anyhow::Context;
use anyhow::bail;
use bytes::Bytes;
use functions_host::AttributeValue;
use functions_host::Span;
use functions_host::SpanSink;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use serde_json::json;
use tokio::sync::mpsc;

/// Spans that may wait for their batch; more are dropped.
const QUEUE: usize = 16_384;

/// The most spans in one export.
const BATCH: usize = 512;

/// The longest a span waits for its batch.
const LINGER: Duration = Duration::from_secs(1);

/// Where spans go: a collector's OTLP/HTTP endpoint.
pub struct OtlpExporter {
    spans: mpsc::Sender<Span>,
    /// The host's node id, the spans' `service.instance.id` (set once the host is open).
    node: Arc<OnceLock<String>>,
}

impl OtlpExporter {
    /// An exporter to `endpoint` (`http://HOST:PORT`, or its full `/v1/traces` URL); its task
    /// runs on the current tokio runtime.
    pub fn spawn(endpoint: &str) -> anyhow::Result<Arc<Self>> {
        let target = Target::parse(endpoint)?;
        let (spans, mut queue) = mpsc::channel(QUEUE);
        let node = Arc::new(OnceLock::new());
        let named = node.clone();
        tokio::spawn(async move {
            let mut reported: Option<Instant> = None;
            while let Some(first) = queue.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + LINGER;
                while batch.len() < BATCH {
                    match tokio::time::timeout_at(deadline, queue.recv()).await {
                        Ok(Some(span)) => batch.push(span),
                        Ok(None) | Err(_) => break,
                    }
                }
                let node = named.get().map_or("", String::as_str);
                let body = Bytes::from(request_body(node, &batch).to_string());
                if let Err(err) = target.post(body).await
                    && reported.is_none_or(|at| at.elapsed() > Duration::from_secs(60))
                {
                    eprintln!(
                        "functions-host: exporting {} spans to {}: {err:#} (spans are lost \
                         while the collector cannot be reached)",
                        batch.len(),
                        target.url
                    );
                    reported = Some(Instant::now());
                }
            }
        });
        Ok(Arc::new(Self { spans, node }))
    }

    /// Names the host the spans come from (its node id, [`functions_host::Host::node_id`]).
    pub fn name_node(&self, node: &str) {
        let _ = self.node.set(node.to_owned());
    }
}

impl SpanSink for OtlpExporter {
    fn export(&self, span: Span) {
        // A full queue drops the span: tracing never holds an invocation up.
        let _ = self.spans.try_send(span);
    }
}

/// The collector's address and the path spans are posted to.
struct Target {
    url: String,
    address: SocketAddr,
    authority: String,
    path: String,
}

impl Target {
    fn parse(endpoint: &str) -> anyhow::Result<Self> {
        let Some(rest) = endpoint.strip_prefix("http://") else {
            bail!("--otlp-endpoint {endpoint}: an http:// URL (OTLP over HTTP, JSON)");
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = path.trim_end_matches('/');
        let path = if path.ends_with("/v1/traces") {
            path.to_owned()
        } else {
            format!("{path}/v1/traces")
        };
        let with_port = match authority.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() => authority.to_owned(),
            _ => format!("{authority}:80"),
        };
        let address = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
            .with_context(|| format!("--otlp-endpoint {endpoint}"))?
            .next()
            .with_context(|| format!("--otlp-endpoint {endpoint}: no address"))?;
        Ok(Self {
            url: format!("http://{authority}{path}"),
            address,
            authority: authority.to_owned(),
            path,
        })
    }

    /// Posts one batch; an answer other than 2xx is an error.
    async fn post(&self, body: Bytes) -> anyhow::Result<()> {
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(self.address),
        )
        .await
        .context("connecting timed out")??;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = hyper::Request::post(&self.path)
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
            .await
            .context("the collector did not answer within 10 s")??;
        let status = response.status();
        let answer = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "the collector answered {status}: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            );
        }
        Ok(())
    }
}

/// An `ExportTraceServiceRequest` in OTLP's JSON encoding (ids in hex, times as strings of
/// Unix nanoseconds).
fn request_body(node: &str, spans: &[Span]) -> Value {
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                attribute("service.name", &AttributeValue::Text("functions-host".into())),
                attribute("service.instance.id", &AttributeValue::Text(node.into())),
                attribute(
                    "service.version",
                    &AttributeValue::Text(env!("CARGO_PKG_VERSION").into()),
                ),
            ]},
            "scopeSpans": [{
                "scope": {"name": "functions-host", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans.iter().map(span).collect::<Vec<_>>(),
            }],
        }],
    })
}

fn span(span: &Span) -> Value {
    let nanos = |time: std::time::SystemTime| {
        time.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_string()
    };
    let mut value = json!({
        "traceId": hex(&span.trace_id),
        "spanId": hex(&span.span_id),
        "name": span.name,
        // SERVER: each handles a request (from a client, the queue, or another function).
        "kind": 2,
        "startTimeUnixNano": nanos(span.start),
        "endTimeUnixNano": nanos(span.end),
        "attributes": (span.attributes.iter())
            .map(|(key, value)| attribute(key, value))
            .collect::<Vec<_>>(),
        "status": match &span.error {
            None => json!({"code": 1}),
            Some(message) => json!({"code": 2, "message": message}),
        },
    });
    if let Some(parent) = &span.parent_span_id {
        value["parentSpanId"] = hex(parent).into();
    }
    value
}

fn attribute(key: &str, value: &AttributeValue) -> Value {
    let value = match value {
        AttributeValue::Text(text) => json!({"stringValue": text}),
        // int64 is a string in OTLP's JSON.
        AttributeValue::Int(int) => json!({"intValue": int.to_string()}),
    };
    json!({"key": key, "value": value})
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_name_the_traces_path_once() {
        for (endpoint, path) in [
            ("http://127.0.0.1:4318", "/v1/traces"),
            ("http://127.0.0.1:4318/", "/v1/traces"),
            ("http://127.0.0.1:4318/v1/traces", "/v1/traces"),
            ("http://127.0.0.1:4318/otel", "/otel/v1/traces"),
        ] {
            assert_eq!(Target::parse(endpoint).unwrap().path, path, "{endpoint}");
        }
        assert!(Target::parse("https://collector:4318").is_err());
        assert_eq!(
            Target::parse("http://127.0.0.1").unwrap().address.port(),
            80
        );
    }

    #[test]
    fn a_span_is_encoded_as_otlp_json() {
        let start = UNIX_EPOCH + Duration::from_millis(1_500);
        let value = span(&Span {
            trace_id: [0xab; 16],
            span_id: [1; 8],
            parent_span_id: None,
            name: "invoke hello".into(),
            start,
            end: start + Duration::from_millis(2),
            attributes: vec![("faas.name", AttributeValue::Text("hello".into()))],
            error: Some("boom".into()),
        });
        assert_eq!(value["traceId"], "ab".repeat(16));
        assert_eq!(value["spanId"], "0101010101010101");
        assert!(value.get("parentSpanId").is_none());
        assert_eq!(value["startTimeUnixNano"], "1500000000");
        assert_eq!(value["endTimeUnixNano"], "1502000000");
        assert_eq!(value["status"], json!({"code": 2, "message": "boom"}));
        assert_eq!(
            value["attributes"][0],
            json!({"key": "faas.name", "value": {"stringValue": "hello"}})
        );
    }
}
