//! Asynchronous calls over HTTP: `POST /api/functions/{name}/calls` queues one and answers its id
//! at once (202); `GET /api/calls/{id}?wait=SECONDS` answers its outcome once it is done (then it
//! is forgotten), 202 while it is pending or running.

use std::time::Duration;

use functions_host::CallOutcome;
use functions_host::CallRequest;
use functions_host::CallStatus;
use functions_host::TenantView;
use http::HeaderValue;
use http::Request;
use http::StatusCode;
use hyper::body::Incoming;
use serde_json::json;

use super::ApiError;
use super::HttpResponse;
use super::State;
use super::body::Body;
use super::error::json;
use super::invoke::response_of;

/// `POST /api/functions/{name}/calls`: the body is the payload (stdin of a WebAssembly guest, the
/// event or request of a JavaScript function); the query string is the function's too.
pub(crate) async fn create(
    state: &State,
    view: TenantView<'_>,
    name: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let (parts, body) = request.into_parts();
    let payload = state
        .read_body(body, functions_host::MAX_PAYLOAD_BYTES)
        .await?;
    let call = CallRequest {
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        query: parts.uri.query().map(str::to_owned),
        payload: payload.to_vec(),
        traceparent: (parts.headers.get("traceparent"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let id = view.call(name, call).await?;
    Ok(json(StatusCode::ACCEPTED, &json!({ "call_id": id })))
}

/// The `wait=SECONDS` of a long poll (none: zero), capped at [`functions_host::MAX_RESULT_WAIT`].
pub(crate) fn wait_of(wait: Option<&str>) -> Result<Duration, ApiError> {
    match wait {
        None => Ok(Duration::ZERO),
        Some(seconds) => seconds
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(functions_host::MAX_RESULT_WAIT.as_secs_f64())))
            .ok_or_else(|| ApiError::bad_request("wait must be a number of seconds")),
    }
}

/// `GET /api/calls/{id}?wait=SECONDS`: the call's response (or its error) with its state in
/// `X-Call-State`, once it is done.
pub(crate) async fn fetch(
    view: TenantView<'_>,
    id: &str,
    wait: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let wait = wait_of(wait)?;
    let (mut response, call_state) = match view.result(id, wait).await? {
        CallStatus::Waiting(call_state) => (
            json(
                StatusCode::ACCEPTED,
                &json!({ "call_id": id, "state": call_state.as_str() }),
            ),
            call_state.as_str(),
        ),
        CallStatus::Done(CallOutcome::Finished(result)) => (
            response_of(result.status, result.headers, Body::full(result.body)),
            "finished",
        ),
        CallStatus::Done(CallOutcome::Failed(err)) => {
            (ApiError::from(err).into_response(), "failed")
        }
    };
    if let Ok(id) = HeaderValue::try_from(id) {
        response.headers_mut().insert("x-call-id", id);
    }
    response
        .headers_mut()
        .insert("x-call-state", HeaderValue::from_static(call_state));
    Ok(response)
}
