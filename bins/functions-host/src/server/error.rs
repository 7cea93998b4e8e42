//! JSON errors: `{"error": {"code", "message", ...}}` with the right HTTP status.

use super::body::Body;
use http::HeaderValue;
use http::Response;
use http::StatusCode;
use http::header;
use serde_json::Value;
use serde_json::json;

/// An error answered to the client (boxed: handlers return it on every path).
#[derive(Debug)]
pub struct ApiError(Box<ErrorBody>);

#[derive(Debug)]
struct ErrorBody {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Extra fields of the error object (e.g. `line` and `column` of a compile error).
    details: serde_json::Map<String, Value>,
    /// The `Allow` header of a 405.
    allow: Option<&'static str>,
    /// The `Retry-After` header of a 429 for a spent quota, in seconds.
    retry_after: Option<u64>,
}

impl ApiError {
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

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no function named {name:?}"),
        )
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            err.to_string(),
        )
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut err = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("allowed methods: {allow}"),
        );
        err.0.allow = Some(allow);
        err
    }

    /// A management request without a valid `Authorization: Bearer` key.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this server requires an API key: Authorization: Bearer KEY \
             (the CLI sends FUNCTIONS_HOST_API_KEY)",
        )
    }

    /// A function whose queue holds `max` waiting calls already.
    pub fn queue_full(name: &str, max: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            format!("{max} calls of {name:?} are waiting already: try again later"),
        )
    }

    /// A request whose key's request quota is spent for the next `retry_after`.
    pub fn quota_spent(retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "quota_exceeded",
            format!("this API key's request quota is spent: retry in {seconds} s"),
        );
        err.0.retry_after = Some(seconds.max(1));
        err
    }

    /// The refusal of a request without a valid key, or over its quota.
    pub fn refused(refusal: super::auth::Refusal) -> Self {
        match refusal {
            super::auth::Refusal::Unauthorized => Self::unauthorized(),
            super::auth::Refusal::QuotaSpent { retry_after } => Self::quota_spent(retry_after),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
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

    pub fn into_response(self) -> Response<Body> {
        let mut response = json(self.0.status, &self.body());
        let body = *self.0;
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
        if let Some(allow) = body.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

/// A JSON response.
pub fn json(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Body::full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
