// functions-host: stands in for deno_net's 02_tls.js, which deno_fetch's 22_http_client.js loads
// for `Deno.createHttpClient`'s client certificates. A function has neither `Deno` nor sockets of
// its own, so nothing reaches this; if something did, it would be told so.
(function () {
function loadTlsKeyPair(api) {
  throw new TypeError(`${api} is not available to functions`);
}
return { loadTlsKeyPair };
})();
