// functions-host: stands in for deno_fetch's 22_http_client.js. `Deno.HttpClient` does not exist in
// a function, so `new Request(url, { client })` always fails its brand check with a TypeError.
(function () {
class HttpClient {
  constructor() {
    throw new TypeError("Illegal constructor");
  }
}
return { HttpClientPrototype: HttpClient.prototype };
})();
