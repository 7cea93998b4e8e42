//! `GET /metrics` (Prometheus' text format, for scrapers) and `GET /api/metrics` (the same
//! counters as JSON with the last hour's history, for the dashboard).

use functions_host::Tenant;
use http::HeaderValue;
use http::Response;
use http::StatusCode;
use http::header;

use super::HttpResponse;
use super::State;
use super::body::Body;
use super::error::json;

/// `GET /metrics`: every series the key may see.
pub(crate) fn text(state: &State, tenant: Option<&Tenant>) -> HttpResponse {
    let mut response = Response::new(Body::full(state.host.metrics_text(tenant)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /api/metrics`
pub(crate) fn summary(state: &State, tenant: Option<&Tenant>) -> HttpResponse {
    let summary =
        serde_json::to_value(state.host.metrics_summary(tenant)).expect("the summary serializes");
    json(StatusCode::OK, &summary)
}
