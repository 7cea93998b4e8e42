//! JSON errors: `{"error": {"code", "message", ...}}` with the right HTTP status, from the
//! host's domain errors and the HTTP layer's own (no route, wrong method).

use functions_host::ErrorKind;

use super::body::Body;
use http::HeaderValue;
use http::Response;
use http::StatusCode;
use http::header;
use serde_json::Value;
use serde_json::json;

/// The header that marks an error the host answered (its value is the error's code), as opposed
/// to a function's own response, whatever its status.
pub const HOST_ERROR: header::HeaderName =
    header::HeaderName::from_static(functions_runtime::HOST_ERROR_HEADER);

/// An error answered to the client (boxed: handlers return it on every path).
#[derive(Debug)]
pub struct ApiError(Box<ErrorBody>);

/// The status each kind of host error is answered with.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest | ErrorKind::CompileError => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::QueueFull | ErrorKind::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Gone => StatusCode::GONE,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::TimeLimit => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Cancelled | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<functions_host::Error> for ApiError {
    fn from(err: functions_host::Error) -> Self {
        let mut api = Self::new(status_of(err.kind()), err.kind().code(), err.message());
        api.0.details = err.details().clone();
        api.0.retry_after = err.retry_after().map(|after| after.as_secs());
        api
    }
}

#[derive(Debug)]
struct ErrorBody {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Extra fields of the error object (e.g. `line` and `column` of a compile error).
    details: serde_json::Map<String, Value>,
    /// The `Allow` header of a 405.
    allow: Option<String>,
    /// The `Retry-After` header of a 429 for a spent quota, in seconds.
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(ErrorBody {
            status,
            code,
            message: message.into(),
            details: Default::default(),
            allow: None,
            retry_after: None,
        }))
    }

    /// A 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A 405 naming the methods allowed.
    pub fn method_not_allowed(allow: impl Into<String>) -> Self {
        let allow = allow.into();
        let mut err = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("allowed methods: {allow}"),
        );
        err.0.allow = Some(allow);
        err
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The machine-readable code (`not_found`, `host_not_allowed`, ...).
    pub fn code(&self) -> &'static str {
        self.0.code
    }

    /// The JSON body: `{"error": {"code", "message", ...}}`.
    pub fn body(&self) -> Value {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), self.0.code.into());
        error.insert("message".into(), self.0.message.clone().into());
        error.extend(self.0.details.clone());
        json!({ "error": error })
    }

    /// Adds a field to the error object.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.details.insert(key.to_owned(), value.into());
        self
    }

    /// The response: the status, the JSON body, and the headers the status calls for.
    pub(crate) fn into_response(self) -> Response<Body> {
        let mut response = json(self.0.status, &self.body());
        let body = *self.0;
        if body.status == StatusCode::UPGRADE_REQUIRED {
            // The only upgrade the server offers: capnweb's WebSocket at /rpc/{name}.
            response
                .headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        if body.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = body.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(allow) = body
            .allow
            .and_then(|allow| HeaderValue::try_from(allow).ok())
        {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
            .headers_mut()
            .insert(HOST_ERROR, HeaderValue::from_static(body.code));
        response
    }
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Body::full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use functions_runtime::InvokeError;

    use super::*;

    #[test]
    fn each_failure_gets_its_status() {
        let status = |err: InvokeError| ApiError::from(functions_host::Error::from(err)).status();
        // A worker that failed is the host's fault: 500, and the worker is replaced.
        assert_eq!(
            status(InvokeError::WorkerFailed),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(status(InvokeError::Hung), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            status(InvokeError::EngineStopped),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let quota = ApiError::from(functions_host::Error::quota_spent(
            std::time::Duration::from_millis(1500),
        ));
        let response = quota.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response = ApiError::from(functions_host::Error::unauthorized()).into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
