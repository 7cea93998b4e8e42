//! Spans of what the host runs, for tracing: one per invocation (over HTTP, by the embedder, as
//! an asynchronous call) and one per call through a binding or capnweb session, in the W3C
//! trace the invocation continues (its request's `traceparent`, or its caller's). The host hands
//! each finished span to the embedder's [`SpanSink`] (`functions-host serve --otlp-endpoint`
//! exports them over OTLP).

use std::time::Duration;
use std::time::SystemTime;

use crate::Inner;
use crate::metrics::Via;
use crate::registry::Deployed;

/// Where finished spans go. Called on the thread that finished the invocation: it must not
/// block.
pub trait SpanSink: Send + Sync + 'static {
    /// Takes one finished span.
    fn export(&self, span: Span);
}

/// One finished span.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// The trace it belongs to.
    pub trace_id: [u8; 16],
    /// Its own id.
    pub span_id: [u8; 8],
    /// The span it continues, if any.
    pub parent_span_id: Option<[u8; 8]>,
    /// `invoke NAME`, `call NAME` or `rpc NAME`.
    pub name: String,
    /// When the engine received the invocation.
    pub start: SystemTime,
    /// When it responded (or failed).
    pub end: SystemTime,
    /// What it was: the function, its language, how it came, its outcome, its status.
    pub attributes: Vec<(&'static str, AttributeValue)>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// A span attribute's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttributeValue {
    /// Text.
    Text(String),
    /// A whole number.
    Int(i64),
}

impl Inner {
    /// Hands the span of an invocation of `deployed` that ended with `outcome` to the sink,
    /// if the host has one.
    pub(crate) fn trace(
        &self,
        deployed: &Deployed,
        via: Via,
        outcome: &functions_runtime::Outcome,
    ) {
        let Some(sink) = &self.spans else {
            return;
        };
        let end = SystemTime::now();
        let took = outcome
            .timing
            .map_or(Duration::ZERO, |timing| timing.start + timing.run);
        let (trace_id, span_id, parent_span_id) = match outcome.trace {
            Some(trace) => (trace.trace_id, trace.span_id, trace.parent_span_id),
            // A WebAssembly guest's: a trace of its own.
            None => (random(), random(), None),
        };
        let name = deployed.function.name();
        let mut attributes = vec![
            ("faas.name", AttributeValue::Text(name.to_owned())),
            (
                "functions_host.language",
                AttributeValue::Text(deployed.language.as_str().to_owned()),
            ),
            (
                "functions_host.via",
                AttributeValue::Text(via.as_str().to_owned()),
            ),
            (
                "faas.version",
                AttributeValue::Int(deployed.function.version() as i64),
            ),
        ];
        let error = match &outcome.result {
            Ok(response) => {
                attributes.push((
                    "http.response.status_code",
                    AttributeValue::Int(i64::from(response.status)),
                ));
                None
            }
            Err(err) => {
                let kind = crate::error::kind_of(err);
                attributes.push(("error.type", AttributeValue::Text(kind.code().to_owned())));
                Some(err.to_string())
            }
        };
        let verb = match via {
            Via::Invocation => "invoke",
            Via::Call => "call",
            Via::Session => "rpc",
        };
        sink.export(Span {
            trace_id,
            span_id,
            parent_span_id,
            name: format!("{verb} {name}"),
            start: end.checked_sub(took).unwrap_or(end),
            end,
            attributes,
            error,
        });
    }
}

/// Random bytes for an id.
fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The system's generator does not fail on the platforms this builds for.
    let _ = getrandom::fill(&mut bytes);
    bytes
}
