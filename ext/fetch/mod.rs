//! `Headers`, `FormData`, `Request`, `Response` and the body mixin (see README.md in this folder).

deno_core::extension!(
  fetch,
  deps = [deno_webidl, deno_web],
  lazy_loaded_js = [
    dir "fetch",
    "20_headers.js",
    "21_formdata.js",
    "22_body.js",
    "22_http_client.js",
    "23_request.js",
    "23_response.js",
  ],
);
