//! The WASI command contract of a WebAssembly function, as plain data: the environment a guest
//! sees for a request, and how its standard output becomes the response (as is, or, with the WAGI
//! executor, after a block of CGI headers as WAGI and Spin read it).

use std::collections::BTreeMap;

use url::Url;

use super::Executor;
use crate::Request;
use crate::Response;
use crate::ResponseBody;

/// The environment variables of one invocation: the function's own env, then CGI's
/// `REQUEST_METHOD`, `PATH_INFO`, `QUERY_STRING` (and friends), and each request header as
/// `HTTP_<NAME>` (upper case, `-` as `_`). Under the WAGI executor `GATEWAY_INTERFACE` is
/// `CGI/1.1` too, which tells a guest its output should start with CGI headers.
pub(crate) fn environment(
    request: &Request,
    env: &BTreeMap<String, String>,
    executor: Executor,
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let url = Url::parse(&request.url).ok();
    let path = url.as_ref().map_or("/", Url::path).to_owned();
    let query = url.as_ref().and_then(Url::query).unwrap_or("").to_owned();
    let uri = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    vars.push(("REQUEST_METHOD".into(), request.method.clone()));
    vars.push(("PATH_INFO".into(), path));
    vars.push(("QUERY_STRING".into(), query));
    vars.push(("REQUEST_URI".into(), uri));
    vars.push(("SERVER_PROTOCOL".into(), "HTTP/1.1".into()));
    if executor == Executor::Wagi {
        vars.push(("GATEWAY_INTERFACE".into(), "CGI/1.1".into()));
    }
    vars.push(("CONTENT_LENGTH".into(), request.body.len().to_string()));
    for (name, value) in &request.headers {
        if name.eq_ignore_ascii_case("content-type") {
            vars.push(("CONTENT_TYPE".into(), value.clone()));
        }
        let name = name.to_ascii_uppercase().replace('-', "_");
        vars.push((format!("HTTP_{name}"), value.clone()));
    }
    vars
}

/// A response from WAGI output: CGI headers, a blank line, the body. `Status: 404 Not Found` sets
/// the status, `Location` alone makes it a 302, every other header passes through (but the host's
/// error mark, [`crate::HOST_ERROR_HEADER`]).
pub(crate) fn parse_wagi(output: &[u8]) -> Result<Response, String> {
    let (head, body) = split_head(output).ok_or_else(|| {
        "the function's output has no CGI header block (header lines, then an empty line)"
            .to_owned()
    })?;
    let head = std::str::from_utf8(head).map_err(|_| "the CGI headers are not UTF-8".to_owned())?;
    let mut status = None;
    let mut headers = Vec::new();
    for line in head.lines() {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("the CGI header line {line:?} has no ':'"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or_default();
            status = Some(
                code.parse::<u16>()
                    .ok()
                    .filter(|code| (100..=999).contains(code))
                    .ok_or_else(|| format!("the CGI Status {value:?} is not an HTTP status"))?,
            );
        } else if !name.eq_ignore_ascii_case(crate::HOST_ERROR_HEADER) {
            headers.push((name.to_ascii_lowercase(), value.to_owned()));
        }
    }
    let redirect = headers.iter().any(|(name, _)| name == "location");
    let status = status.unwrap_or(if redirect { 302 } else { 200 });
    Ok(Response {
        status,
        headers,
        body: ResponseBody::Full(body.to_vec()),
    })
}

/// The header block and the body of CGI output: split at the first empty line (`\n\n` or
/// `\r\n\r\n`).
fn split_head(output: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut start = 0;
    while start <= output.len() {
        let end = output[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| start + i)?;
        let line = &output[start..end];
        if line.is_empty() || line == b"\r" {
            return Some((&output[..start], &output[end + 1..]));
        }
        start = end + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_carries_cgi_variables_headers_and_env() {
        let mut request = Request::get("http://localhost/greet/x?name=Ada&x=1");
        request.headers = vec![
            ("Content-Type".into(), "text/plain".into()),
            ("x-forwarded-prefix".into(), "/fn/hello".into()),
        ];
        request.body = b"hi".to_vec();
        let env = BTreeMap::from([("GREETING".to_owned(), "Hello".to_owned())]);
        let vars: BTreeMap<String, String> = environment(&request, &env, Executor::Command)
            .into_iter()
            .collect();
        assert_eq!(vars["GREETING"], "Hello");
        assert_eq!(vars["REQUEST_METHOD"], "GET");
        assert_eq!(vars["PATH_INFO"], "/greet/x");
        assert_eq!(vars["QUERY_STRING"], "name=Ada&x=1");
        assert_eq!(vars["REQUEST_URI"], "/greet/x?name=Ada&x=1");
        assert_eq!(vars["CONTENT_LENGTH"], "2");
        assert_eq!(vars["CONTENT_TYPE"], "text/plain");
        assert_eq!(vars["HTTP_CONTENT_TYPE"], "text/plain");
        assert_eq!(vars["HTTP_X_FORWARDED_PREFIX"], "/fn/hello");
        assert!(!vars.contains_key("GATEWAY_INTERFACE"));
        let wagi = environment(&request, &env, Executor::Wagi);
        assert!(wagi.contains(&("GATEWAY_INTERFACE".into(), "CGI/1.1".into())));
    }

    #[test]
    fn wagi_output_sets_status_headers_and_body() {
        let parts = |output: &[u8]| {
            let response = parse_wagi(output).unwrap();
            let body = response.body.as_full().unwrap().to_vec();
            (response.status, response.headers, body)
        };
        let (status, headers, body) =
            parts(b"Content-Type: text/html\r\nStatus: 404 Not Found\r\nX-Functions-Host-Error: not_found\r\n\r\n<p>gone</p>\n");
        assert_eq!(status, 404);
        assert_eq!(
            headers,
            vec![("content-type".to_owned(), "text/html".to_owned())]
        );
        assert_eq!(body, b"<p>gone</p>\n");

        let (status, headers, body) = parts(b"Location: /elsewhere\n\n");
        assert_eq!(status, 302);
        assert_eq!(
            headers,
            vec![("location".to_owned(), "/elsewhere".to_owned())]
        );
        assert!(body.is_empty());

        let (status, _, body) = parts(b"content-type: text/plain\n\nline one\n\nline three");
        assert_eq!(status, 200);
        assert_eq!(body, b"line one\n\nline three");
    }

    #[test]
    fn wagi_output_without_a_header_block_or_with_a_bad_status_is_an_error() {
        assert!(
            parse_wagi(b"just text, no headers")
                .unwrap_err()
                .contains("no CGI header block")
        );
        assert!(
            parse_wagi(b"no colon here\n\n")
                .unwrap_err()
                .contains("has no ':'")
        );
        assert!(
            parse_wagi(b"Status: teapot\n\n")
                .unwrap_err()
                .contains("not an HTTP status")
        );
    }
}
