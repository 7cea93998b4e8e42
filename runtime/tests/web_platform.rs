//! Web APIs inside a function: Web Crypto, outgoing `fetch` limited to the granted hosts,
//! `location`, structured cloning.

use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::net::TcpListener;

use std::collections::BTreeMap;

use functions_runtime::Function;
use functions_runtime::Module;
use functions_runtime::Request;
use functions_runtime::ResponseBody;

mod common;
use common::engine;
use common::header;
use common::run;
use common::text;
use common::with_net;

/// A one-thread HTTP/1.1 server on an ephemeral port: `/redirect?to=URL` answers 302 to URL,
/// anything else 200 with `METHOD PATH BODY` as the body. Returns its `host:port`.
fn upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut content_length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    content_length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; content_length];
            std::io::Read::read_exact(&mut reader, &mut body).unwrap();
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap(), parts.next().unwrap());
            let reply = match path.strip_prefix("/redirect?to=") {
                Some(to) => format!(
                    "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                ),
                None => {
                    let text = format!("{method} {path} {}", String::from_utf8_lossy(&body));
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-upstream: yes\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    )
                }
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    address
}

#[tokio::test]
async fn fetch_reaches_granted_hosts_only() {
    let engine = engine();
    let granted = upstream();
    let other = upstream();
    let source = format!(
        r#"export default async () => {{
      const res = await fetch("http://{granted}/echo?q=1", {{ method: "POST", body: "ping" }});
      const out = {{ status: res.status, body: await res.text(), upstream: res.headers.get("x-upstream") }};
      const refused = async (url) => {{
        try {{ await fetch(url); return "reached"; }}
        catch (err) {{ return `${{err.constructor.name}}: ${{err.message}}`; }}
      }};
      out.other = await refused("http://{other}/");
      out.redirected = await refused("http://{granted}/redirect?to=http://{other}/");
      return out;
    }}"#
    );
    let f = with_net("fetcher", &source, std::slice::from_ref(&granted));
    let response = run(&engine, &f, Request::json("{}")).await;
    let v: serde_json::Value = serde_json::from_str(text(&response)).unwrap();
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["body"], "POST /echo?q=1 ping");
    assert_eq!(v["upstream"], "yes");
    let denied = format!(
        "TypeError: fetch to \"{other}\" is not allowed: this function may reach only {granted}"
    );
    assert_eq!(v["other"], denied.as_str());
    assert_eq!(v["redirected"], denied.as_str());

    // Without a grant nothing is reachable.
    let f = with_net("offline", &source, &[]);
    let outcome = engine.invoke(&f, Request::json("{}")).await;
    let err = outcome.result.unwrap_err().to_string();
    assert!(
        err.contains(&format!("TypeError: fetch to \"{granted}\" is not allowed")),
        "{err}"
    );
}

#[tokio::test]
async fn a_granted_name_reaches_no_private_address_and_a_grant_without_port_only_default_ports() {
    let engine = engine();
    let (first, second) = (upstream(), upstream());
    let port = |address: &str| address.rsplit_once(':').unwrap().1.to_owned();
    let (first_port, second_port) = (port(&first), port(&second));
    let source = format!(
        r#"export default async () => {{
      const outcome = async (url) => {{
        try {{ return (await (await fetch(url)).text()).split(" ")[0]; }}
        catch (err) {{ return `${{err.constructor.name}}: ${{err.message}}`; }}
      }};
      return {{
        byName: await outcome("http://localhost:{first_port}/"),
        byAddress: await outcome("http://127.0.0.1:{second_port}/"),
        redirectedToName: await outcome("http://127.0.0.1:{second_port}/redirect?to=http://localhost:{first_port}/"),
        portless: await outcome("http://127.0.0.2:{second_port}/"),
      }};
    }}"#
    );
    // `localhost` resolves to loopback: granting the name is not granting this machine.
    let grants = [
        format!("localhost:{first_port}"),
        second.clone(),
        "127.0.0.2".to_owned(),
    ];
    let f = with_net("private", &source, &grants);
    let response = run(&engine, &f, Request::json("{}")).await;
    let v: serde_json::Value = serde_json::from_str(text(&response)).unwrap();
    let refused_private = |outcome: &serde_json::Value| {
        let message = outcome.as_str().unwrap_or_default();
        message.starts_with("TypeError: fetch is not allowed: localhost resolves to ") && message.ends_with(
            "an address of this machine or a private network, which a function reaches only when granted that address itself in allow_net",
        )
    };
    assert!(refused_private(&v["byName"]), "{v}");
    assert_eq!(v["byAddress"], "GET", "{v}");
    assert!(refused_private(&v["redirectedToName"]), "{v}");
    // `127.0.0.2` was granted without a port: ports 80 and 443 only.
    assert_eq!(
        v["portless"],
        format!(
            "TypeError: fetch to \"127.0.0.2:{second_port}\" is not allowed: this function may reach only {}",
            grants.join(", ")
        ),
        "{v}"
    );

    // Granting the address too lets the name reach it.
    let mut grants = grants.to_vec();
    grants.push(format!("127.0.0.1:{first_port}"));
    let f = with_net("private-granted", &source, &grants);
    let response = run(&engine, &f, Request::json("{}")).await;
    let v: serde_json::Value = serde_json::from_str(text(&response)).unwrap();
    assert_eq!(v["byName"], "GET", "{v}");
    assert_eq!(v["redirectedToName"], "GET", "{v}");
}

#[tokio::test]
async fn web_crypto_signs_encrypts_and_derives() {
    let engine = engine();
    let f = Function::javascript(
        "subtle",
        r#"
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
const bytes = (s) => new TextEncoder().encode(s);
export default async () => {
  const s = crypto.subtle;
  const out = {};
  out.sha256 = hex(await s.digest("SHA-256", bytes("abc")));

  const hmac = await s.importKey("raw", bytes("key"), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
  const mac = await s.sign("HMAC", hmac, bytes("The quick brown fox jumps over the lazy dog"));
  out.hmac = hex(mac);
  out.hmacVerifies = await s.verify("HMAC", hmac, mac, bytes("The quick brown fox jumps over the lazy dog"));

  const aes = await s.generateKey({ name: "AES-GCM", length: 256 }, true, ["encrypt", "decrypt"]);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await s.encrypt({ name: "AES-GCM", iv }, aes, bytes("secret"));
  out.aesGcm = new TextDecoder().decode(await s.decrypt({ name: "AES-GCM", iv }, aes, sealed));
  out.aesJwk = (await s.exportKey("jwk", aes)).alg;

  const ec = await s.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const sig = await s.sign({ name: "ECDSA", hash: "SHA-256" }, ec.privateKey, bytes("m"));
  out.ecdsa = await s.verify({ name: "ECDSA", hash: "SHA-256" }, ec.publicKey, sig, bytes("m"));
  out.spki = (await s.exportKey("spki", ec.publicKey)).byteLength;

  const ed = await s.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const edSig = await s.sign("Ed25519", ed.privateKey, bytes("m"));
  out.ed25519 = await s.verify("Ed25519", ed.publicKey, edSig, bytes("m"));

  const a = await s.generateKey({ name: "X25519" }, true, ["deriveBits"]);
  const b = await s.generateKey({ name: "X25519" }, true, ["deriveBits"]);
  const ab = await s.deriveBits({ name: "X25519", public: b.publicKey }, a.privateKey, 256);
  const ba = await s.deriveBits({ name: "X25519", public: a.publicKey }, b.privateKey, 256);
  out.x25519 = hex(ab) === hex(ba);

  const pw = await s.importKey("raw", bytes("password"), "PBKDF2", false, ["deriveBits"]);
  out.pbkdf2 = hex(await s.deriveBits({ name: "PBKDF2", salt: bytes("salt"), iterations: 1, hash: "SHA-1" }, pw, 160));
  const ikm = await s.importKey("raw", bytes("ikm"), "HKDF", false, ["deriveBits"]);
  out.hkdf = (await s.deriveBits({ name: "HKDF", salt: bytes("s"), info: bytes("i"), hash: "SHA-256" }, ikm, 128)).byteLength;

  out.subtleIsSubtle = s instanceof SubtleCrypto && ec.publicKey instanceof CryptoKey;
  out.userAgent = navigator.userAgent.startsWith("functions-host/");
  return out;
};"#,
    );
    let response = run(&engine, &f, Request::json("{}")).await;
    let v: serde_json::Value = serde_json::from_str(text(&response)).unwrap();
    let expected = serde_json::json!({
        "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "hmac": "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
        "hmacVerifies": true,
        "aesGcm": "secret",
        "aesJwk": "A256GCM",
        "ecdsa": true,
        "spki": 91,
        "ed25519": true,
        "x25519": true,
        "pbkdf2": "0c60c80f961f0e71f3a9b524af6012062fe037a6",
        "hkdf": 16,
        "subtleIsSubtle": true,
        "userAgent": true,
    });
    assert_eq!(v, expected);
}

#[tokio::test]
async fn lazily_loaded_globals_can_be_replaced_like_any_other() {
    let engine = engine();
    let f = Function::javascript(
        "replace",
        r#"export default async () => {
      const original = globalThis.fetch;
      globalThis.fetch = () => "mine";
      globalThis.crypto = { mine: true };
      const err = await crypto.mine ? null : "crypto not replaced";
      let domError;
      try { await original("http://127.0.0.1:1/"); } catch (e) { domError = e.constructor.name; }
      return { fetch: fetch(), crypto: crypto.mine, err, domError };
    }"#,
    );
    let response = run(&engine, &f, Request::json("{}")).await;
    assert_eq!(
        text(&response),
        r#"{"fetch":"mine","crypto":true,"err":null,"domError":"TypeError"}"#
    );
}

#[tokio::test]
async fn the_minimum_common_web_api_is_there() {
    let engine = engine();
    let f = Function::javascript(
        "wintertc",
        r#"export default async () => {
      const out = {};
      // Compression round trip through streams.
      const packed = new Blob(["hello ".repeat(100)]).stream().pipeThrough(new CompressionStream("gzip"));
      const unpacked = packed.pipeThrough(new DecompressionStream("gzip"));
      out.gzip = (await new Response(unpacked).text()).length;
      // Abort signals.
      const timedOut = await new Promise((resolve) => {
        const signal = AbortSignal.timeout(1);
        signal.addEventListener("abort", () => resolve(signal.reason.name));
      });
      out.timeout = timedOut;
      const controller = new AbortController();
      const any = AbortSignal.any([controller.signal, AbortSignal.timeout(60000)]);
      controller.abort(new Error("stop"));
      out.any = any.aborted && any.reason.message;
      // Bodies: clone, formData, blob, arrayBuffer.
      const form = new FormData();
      form.append("field", "value");
      form.append("file", new File(["content"], "a.txt", { type: "text/plain" }));
      const request = new Request("http://x/", { method: "POST", body: form });
      const parsed = await request.clone().formData();
      out.form = [parsed.get("field"), await parsed.get("file").text(), parsed.get("file").name];
      const response = new Response(new Uint8Array([1, 2, 3]));
      const copy = response.clone();
      out.bodies = [(await response.arrayBuffer()).byteLength, (await copy.blob()).size];
      // URLPattern, structuredClone, reportError, queuing strategies, navigator.
      out.pattern = new URLPattern({ pathname: "/users/:id" }).exec("http://x/users/7").pathname.groups.id;
      const cloned = structuredClone({ big: 1n, set: new Set([1]), bytes: new Uint8Array([9]), error: new RangeError("r") });
      out.clone = [typeof cloned.big, cloned.set.has(1), cloned.bytes[0], cloned.error instanceof RangeError];
      let reported;
      globalThis.addEventListener("error", (event) => { reported = event.message; event.preventDefault(); });
      reportError(new Error("reported"));
      out.reported = reported;
      out.strategies = [new CountQueuingStrategy({ highWaterMark: 2 }).highWaterMark, new ByteLengthQueuingStrategy({ highWaterMark: 8 }).size(new Uint8Array(3))];
      out.encoder = (await new Response(new Blob(["é"]).stream().pipeThrough(new TextDecoderStream()).pipeThrough(new TextEncoderStream())).arrayBuffer()).byteLength;
      out.domException = new DOMException("m", "NotFoundError").code;
      return out;
    }"#,
    );
    let response = run(&engine, &f, Request::json("{}")).await;
    let v: serde_json::Value = serde_json::from_str(text(&response)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "gzip": 600,
            "timeout": "TimeoutError",
            "any": "stop",
            "form": ["value", "content", "a.txt"],
            "bodies": [3, 3],
            "pattern": "7",
            "clone": ["bigint", true, 9, true],
            "reported": "Uncaught Error: reported",
            "strategies": [2, 3],
            "encoder": 2,
            "domException": 8,
        })
    );
}

/// Streams, blobs, forms and the performance timeline are loaded on first use (not held in the
/// base snapshot): a stream made by a blob before any stream global was touched is still a stream
/// to `Response` and to the host, and the time origin is the isolate's.
#[tokio::test]
async fn scripts_loaded_on_first_use_behave_as_if_always_there() {
    let engine = engine();
    let f = Function::javascript(
        "lazy",
        r#"export default {
      async fetch() {
        const before = Date.now();
        const elapsed = performance.now();
        const origin = performance.timeOrigin;
        const stream = new Blob(["streamed ", "body"]).stream();
        return new Response(stream, {
          headers: {
            "x-time": String(elapsed >= 0 && Math.abs(origin + elapsed - before) < 1000),
            "x-form": String(await new Response(new URLSearchParams("a=1")).formData().then((f) => f.get("a"))),
            "x-blob": String(await new Response(new Blob(["blob"])).text()),
          },
        });
      },
    }"#,
    );
    let outcome = engine.invoke(&f, Request::get("http://localhost/")).await;
    let response = outcome.result.unwrap();
    assert_eq!(header(&response, "x-time"), Some("true"));
    assert_eq!(header(&response, "x-form"), Some("1"));
    assert_eq!(header(&response, "x-blob"), Some("blob"));
    let ResponseBody::Stream(mut stream) = response.body else {
        panic!("the blob's stream was not streamed");
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend(chunk.unwrap());
    }
    assert_eq!(body, b"streamed body");
}

#[tokio::test]
async fn a_location_is_the_base_of_relative_urls_and_absent_by_default() {
    let engine = engine();
    let source = r#"export default () => {
      if (typeof location === "undefined") {
        try { new Request("x"); return "no base"; } catch (e) { return `${e.name}: no location`; }
      }
      return {
        href: location.href,
        pathname: location.pathname,
        request: new Request("x?y=1").url,
        redirect: Response.redirect("/z").headers.get("location"),
      };
    }"#;
    let plain = Function::javascript("nowhere", source);
    let response = run(&engine, &plain, Request::json("{}")).await;
    assert_eq!(text(&response), r#""TypeError: no location""#);

    let mut settings = plain.settings().clone();
    settings.location = Some("https://example.com/app/index.html".parse().unwrap());
    let located = Function::new(
        "located",
        1,
        "index.js",
        BTreeMap::from([("index.js".to_owned(), Module::javascript(source))]),
        settings,
    );
    let response = run(&engine, &located, Request::json("{}")).await;
    assert_eq!(
        text(&response),
        r#"{"href":"https://example.com/app/index.html","pathname":"/app/index.html","request":"https://example.com/app/x?y=1","redirect":"https://example.com/z"}"#
    );
}

#[tokio::test]
async fn structured_clone_transfers_buffers_and_ports_and_refuses_platform_objects() {
    let engine = engine();
    let f = Function::javascript(
        "transfer",
        r#"export default async () => {
      const buffer = new Uint8Array([1, 2, 3]).buffer;
      const copy = structuredClone(buffer, { transfer: [buffer] });
      let again;
      try { structuredClone(buffer, { transfer: [buffer] }); } catch (e) { again = e.name; }
      const { port1, port2 } = new MessageChannel();
      const moved = structuredClone(port2, { transfer: [port2] });
      const received = new Promise((resolve) => (port1.onmessage = (e) => resolve(e.data)));
      moved.postMessage("through the moved port");
      const message = await received;
      port1.close();
      let response;
      try { structuredClone(new Response("r")); } catch (e) { response = e.name; }
      return { detached: buffer.byteLength, copy: [...new Uint8Array(copy)], again, message, response };
    }"#,
    );
    let response = run(&engine, &f, Request::json("{}")).await;
    assert_eq!(
        text(&response),
        r#"{"detached":0,"copy":[1,2,3],"again":"DataCloneError","message":"through the moved port","response":"DataCloneError"}"#
    );
}

#[tokio::test]
async fn no_accessor_on_the_shared_prototypes_sees_a_host_object() {
    let engine = engine();
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/js/prototype_sweep.js"),
    )
    .unwrap();
    let f = with_net("sweep", &source, &[]);
    let response = run(&engine, &f, Request::get("http://localhost/")).await;
    let v: serde_json::Value = serde_json::from_str(text(&response)).unwrap();
    assert_eq!(v["installed"], serde_json::json!([]), "{v}");
    assert!(v["refused"].as_u64().unwrap() > 2000, "{v}");
    assert_eq!(v["received"], 0, "{v}");
    assert_eq!(
        v["platform"],
        serde_json::json!({
            "text": "blob bytes", "echoed": "1", "streamed": "streamed", "opened": "secret",
            "cloned": 2, "denied": "TypeError", "url": "1", "headers": 2,
        })
    );
    assert_eq!(
        v["ordinary"],
        serde_json::json!({
            "subclassedArray": 3, "subclassedPromise": 7, "ownToString": "own",
            "prototypeToString": "named", "thenable": "thenable", "spread": 3,
        })
    );
}
