//! The dashboard: a page, its script and its style, embedded in the binary (no CDN, nothing
//! fetched from elsewhere). The page holds no data: it reads everything from `/api` (with the
//! API key it asks for when the server has keys) and draws it itself.

use http::HeaderValue;
use http::Response;
use http::StatusCode;
use http::header;

use super::ApiError;
use super::HttpResponse;
use super::body::Body;

/// The page at `/`.
const PAGE: &str = include_str!("dashboard/index.html");

/// The files under `/dashboard/`, with their types.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("dashboard/style.css"),
    ),
];

/// What the page may load and connect to: this server only; no inline script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `GET /`
pub(crate) fn page() -> HttpResponse {
    serve(PAGE, "text/html; charset=utf-8")
}

/// `GET /dashboard/{file}`
pub(crate) fn asset(file: &str) -> Result<HttpResponse, ApiError> {
    ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, content_type, text)| serve(text, content_type))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("the dashboard has no file {file:?}"),
            )
        })
}

fn serve(text: &'static str, content_type: &'static str) -> HttpResponse {
    let mut response = Response::new(Body::full(text));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A new release serves new files under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
