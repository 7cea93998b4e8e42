// What the client sends and how it reads answers, against a fake fetch (no server).

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';

import { FunctionClient, FunctionError } from '../dist/index.js';

/** A fetch that records each request and answers with `respond(request)`. */
function recorder(respond = () => Response.json({ functions: [] })) {
  const requests = [];
  const fetch = async (url, init) => {
    const request = new Request(url, init);
    const body = request.body === null ? null : await request.text();
    requests.push({ url: request.url, method: request.method, headers: request.headers, body });
    return respond(request);
  };
  return { fetch, requests };
}

test('the API key is sent as a bearer token, and no header without one', async () => {
  for (const [apiKey, expected] of [
    ['alpha', 'Bearer alpha'],
    ['', null],
    [undefined, null],
  ]) {
    const { fetch, requests } = recorder();
    const client = new FunctionClient({ baseUrl: 'http://127.0.0.1:9/', apiKey, fetch });
    await client.list();
    await client.invoke('f', { a: 1 });
    for (const request of requests) {
      assert.equal(request.headers.get('authorization'), expected, `apiKey ${apiKey}`);
    }
    assert.equal(requests[0].url, 'http://127.0.0.1:9/api/functions');
  }
});

test('a base URL keeps its path prefix', async () => {
  const { fetch, requests } = recorder();
  const client = new FunctionClient({ baseUrl: 'https://fn.example.com/functions-host/', fetch });
  assert.equal(client.baseUrl, 'https://fn.example.com/functions-host');
  await client.invoke('hello');
  assert.equal(requests[0].url, 'https://fn.example.com/functions-host/fn/hello/');
});

test('an event is POSTed as JSON; no event sends no body', async () => {
  const { fetch, requests } = recorder(() => new Response('ok'));
  const client = new FunctionClient({ baseUrl: 'http://h', fetch });
  await client.invoke('f', { name: 'World' });
  await client.invoke('f');
  await client.invoke('f', null);
  assert.deepEqual(
    requests.map((r) => [r.method, r.url, r.headers.get('content-type'), r.body]),
    [
      ['POST', 'http://h/fn/f/', 'application/json', '{"name":"World"}'],
      ['POST', 'http://h/fn/f/', null, null],
      ['POST', 'http://h/fn/f/', 'application/json', 'null'],
    ],
  );
});

test('a request is sent with its method, headers, body, path and query', async () => {
  const { fetch, requests } = recorder(() => new Response('ok'));
  const client = new FunctionClient({ baseUrl: 'http://h', apiKey: 'k', fetch });
  await client.invoke(
    'f',
    new Request('http://elsewhere/a/b?x=1', {
      method: 'PATCH',
      headers: { 'x-one': '1', 'content-type': 'text/plain' },
      body: 'body!',
    }),
  );
  // Request-like objects too, with a stream for a body and a relative URL.
  await client.invoke('f', {
    url: '/c?y=2',
    method: 'PUT',
    headers: { authorization: 'Bearer the-functions-own' },
    body: new Blob(['streamed']).stream(),
  });
  // Options override the request's.
  await client.invoke('f', new Request('http://x/ignored', { method: 'DELETE' }), {
    method: 'GET',
    path: 'p?q=1',
    headers: { 'x-two': '2' },
  });
  const seen = requests.map((r) => [r.method, r.url, r.body, r.headers.get('authorization')]);
  assert.deepEqual(seen, [
    ['PATCH', 'http://h/fn/f/a/b?x=1', 'body!', 'Bearer k'],
    ['PUT', 'http://h/fn/f/c?y=2', 'streamed', 'Bearer the-functions-own'],
    ['GET', 'http://h/fn/f/p?q=1', null, 'Bearer k'],
  ]);
  assert.equal(requests[0].headers.get('x-one'), '1');
  assert.equal(requests[0].headers.get('content-type'), 'text/plain');
  assert.equal(requests[2].headers.get('x-two'), '2');
});

test('asEvent sends a request-shaped object as the JSON event', async () => {
  const { fetch, requests } = recorder(() => new Response('ok'));
  const client = new FunctionClient({ baseUrl: 'http://h', fetch });
  await client.invoke('f', { url: 'https://example.com', method: 'GET' }, { asEvent: true });
  assert.equal(requests[0].method, 'POST');
  assert.equal(requests[0].url, 'http://h/fn/f/');
  assert.equal(requests[0].body, '{"url":"https://example.com","method":"GET"}');
});

test('an event with GET is refused before sending', async () => {
  const { fetch, requests } = recorder();
  const client = new FunctionClient({ baseUrl: 'http://h', fetch });
  await assert.rejects(client.invoke('f', { a: 1 }, { method: 'GET' }), TypeError);
  assert.equal(requests.length, 0);
});

test('names are one path segment', async () => {
  const { fetch, requests } = recorder(() => Response.json({ name: 'x' }, { status: 201 }));
  const client = new FunctionClient({ baseUrl: 'http://h', fetch });
  await client.invoke('../api/functions');
  await client.deploy('1', { id: 'a/b' });
  assert.equal(requests[0].url, 'http://h/fn/..%2Fapi%2Ffunctions/');
  assert.equal(requests[1].url, 'http://h/api/functions/a%2Fb');
  // Dot segments are refused (a URL parser would resolve them: get('.') would list).
  await assert.rejects(client.get('.'), TypeError);
  await assert.rejects(client.delete('..'), TypeError);
  assert.equal(requests.length, 2);
});

test('a redirect is not followed; a browser\'s hidden one is a FunctionError', async () => {
  const { fetch, requests } = recorder(() => new Response(null, { status: 307, headers: { location: '/x' } }));
  const client = new FunctionClient({ baseUrl: 'http://h', fetch });
  const answer = await client.invoke('f');
  assert.equal(answer.status, 307);
  assert.equal(requests.length, 1);
  const opaque = { type: 'opaqueredirect', status: 0, ok: false, headers: new Headers() };
  const browser = new FunctionClient({ baseUrl: 'http://h', fetch: async (_, init) => {
    assert.equal(init.redirect, 'manual');
    return opaque;
  } });
  await assert.rejects(browser.invoke('f'), (err) => err instanceof FunctionError && err.code === 'redirect');
});

test('data is JSON when the response says so, else text', async () => {
  const answers = [
    Response.json({ a: 1 }),
    new Response('{"a":1}', { headers: { 'content-type': 'text/plain' } }),
    new Response('{"b":2}', { headers: { 'content-type': 'application/problem+json; charset=utf-8' } }),
    new Response(null, { status: 204, headers: { 'content-type': 'application/json' } }),
    new Response(null, { status: 204 }),
    new Response('not json', { headers: { 'content-type': 'application/json' } }),
  ];
  const client = new FunctionClient({ baseUrl: 'http://h', fetch: async () => answers.shift() });
  const data = [];
  for (let i = 0; i < 6; i++) data.push((await client.invoke('f')).data);
  assert.deepEqual(data, [{ a: 1 }, '{"a":1}', { b: 2 }, null, '', 'not json']);
});

test("a function's own error response is returned; the host's is thrown", async () => {
  const hostError = {
    error: { code: 'function_error', message: 'boom', stack: 'Error: boom\n    at f (index.js:1:1)' },
  };
  const answers = [
    Response.json({ error: { code: 'not_found', message: 'its own' } }, { status: 404 }),
    Response.json(hostError, { status: 500, headers: { 'x-functions-host-error': 'function_error' } }),
  ];
  const client = new FunctionClient({ baseUrl: 'http://h', fetch: async () => answers.shift() });
  const own = await client.invoke('f');
  assert.equal(own.status, 404);
  assert.equal(own.data.error.message, 'its own');
  const err = await client.invoke('f').then(
    () => assert.fail('no error'),
    (err) => err,
  );
  assert.ok(err instanceof FunctionError);
  assert.equal(err.name, 'FunctionError');
  assert.equal(err.code, 'function_error');
  assert.equal(err.status, 500);
  assert.equal(err.message, 'boom');
  assert.match(err.remoteStack, /index\.js:1:1/);
});

test('management errors carry code, position and Retry-After', async () => {
  const answers = [
    Response.json(
      { error: { code: 'compile_error', message: 'SyntaxError', file: 'index.ts', line: 3, column: 7 } },
      { status: 400 },
    ),
    Response.json(
      { error: { code: 'quota_exceeded', message: 'spent' } },
      { status: 429, headers: { 'retry-after': '17' } },
    ),
    new Response('<html>bad gateway</html>', { status: 502 }),
  ];
  const client = new FunctionClient({ baseUrl: 'http://h', fetch: async () => answers.shift() });
  const compile = await client.deploy('x', { id: 'f' }).catch((err) => err);
  assert.deepEqual(
    [compile.code, compile.status, compile.file, compile.line, compile.column],
    ['compile_error', 400, 'index.ts', 3, 7],
  );
  const quota = await client.list().catch((err) => err);
  assert.deepEqual([quota.code, quota.status, quota.retryAfter], ['quota_exceeded', 429, 17]);
  const proxy = await client.list().catch((err) => err);
  assert.deepEqual([proxy.code, proxy.status, proxy.message], ['http_502', 502, '<html>bad gateway</html>']);
});

test('a server that cannot be reached is a network_error with status 0 and the cause', async () => {
  // A port nobody listens on: bind one, then close it.
  const port = await new Promise((resolve) => {
    const listener = createServer().listen(0, '127.0.0.1', () => {
      const { port } = listener.address();
      listener.close(() => resolve(port));
    });
  });
  const client = new FunctionClient({ baseUrl: `http://127.0.0.1:${port}` });
  for (const attempt of [() => client.invoke('f', {}), () => client.list()]) {
    const err = await attempt().catch((err) => err);
    assert.ok(err instanceof FunctionError, String(err));
    assert.equal(err.code, 'network_error');
    assert.equal(err.status, 0);
    assert.ok(err.cause, 'keeps the cause');
  }
});

test('an aborted request rejects with the abort reason, not a FunctionError', async () => {
  const fetch = (url, init) =>
    new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason)));
  const client = new FunctionClient({ baseUrl: 'http://h', fetch });
  const controller = new AbortController();
  const pending = client.invoke('f', {}, { signal: controller.signal });
  controller.abort();
  const err = await pending.catch((err) => err);
  assert.equal(err.name, 'AbortError');
  assert.ok(!(err instanceof FunctionError));
});

test('deploy sends a manifest with the server-side names', async () => {
  const { fetch, requests } = recorder(() => Response.json({ name: 'f', call_url: 'u', limits: { cpu_ms: 5 } }, { status: 201 }));
  const client = new FunctionClient({ baseUrl: 'http://h', fetch });
  const info = await client.deploy('export default () => 1', {
    id: 'f',
    language: 'typescript',
    env: { A: '1' },
    bindings: { MATH: 'math', DB: { function: 'db' } },
    limits: { cpuMs: 5, wallClockMs: 6, memoryMb: 64, concurrency: 1 },
    allowNet: ['example.com'],
    isolation: 'function',
    public: false,
  });
  assert.deepEqual(info, { name: 'f', callUrl: 'u', limits: { cpuMs: 5 } });
  assert.equal(requests[0].method, 'PUT');
  assert.equal(requests[0].headers.get('content-type'), 'application/json');
  assert.deepEqual(JSON.parse(requests[0].body), {
    language: 'typescript',
    files: { 'index.ts': 'export default () => 1' },
    env: { A: '1' },
    bindings: { MATH: { function: 'math' }, DB: { function: 'db' } },
    limits: { cpu_ms: 5, wall_clock_ms: 6, memory_mb: 64, concurrency: 1 },
    allow_net: ['example.com'],
    isolation: 'function',
    public: false,
  });
  // A single file's name comes from the entry, else the language.
  for (const [options, file] of [
    [{ language: 'python' }, 'main.py'],
    [{ language: 'python', entry: 'hello' }, 'main.py'],
    [{ language: 'python', entry: 'app.py:hello' }, 'app.py'],
    [{ language: 'tsx' }, 'index.tsx'],
    [{}, 'index.js'],
    [{ entry: 'src/main.ts' }, 'src/main.ts'],
  ]) {
    await client.deploy('x', { id: 'f', ...options });
    assert.deepEqual(Object.keys(JSON.parse(requests.at(-1).body).files), [file], JSON.stringify(options));
  }
});

test('a wasm binary is PUT as it is, or in a manifest when it has settings a manifest carries', async () => {
  const { fetch, requests } = recorder(() => Response.json({ name: 'w' }, { status: 201 }));
  const client = new FunctionClient({ baseUrl: 'http://h', fetch });
  const wasm = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]);
  await client.deploy(wasm, { id: 'w', entry: 'hello.wasm', isolation: 'function' });
  assert.equal(requests[0].url, 'http://h/api/functions/w?entry=hello.wasm&isolation=function');
  assert.equal(requests[0].headers.get('content-type'), 'application/wasm');
  await client.deploy(wasm.buffer, { id: 'w', env: { A: '1' } });
  assert.deepEqual(JSON.parse(requests[1].body), {
    language: 'wasm',
    files: { 'main.wasm': 'AGFzbQEAAAA=' },
    env: { A: '1' },
  });
});

test('follow against a server that answers at once asks about once a second, not in a loop', async () => {
  const asked = [];
  const fetch = async (url) => {
    asked.push(new URL(url).search);
    return Response.json({ logs: asked.length === 1 ? [{ id: 7, message: 'first' }] : [] });
  };
  const client = new FunctionClient({ baseUrl: 'http://h', fetch });
  const seen = [];
  for await (const line of client.logs('f', { follow: true, wait: 0, signal: AbortSignal.timeout(1500) })) {
    seen.push(line.message);
  }
  assert.deepEqual(seen, ['first']);
  assert.ok(asked.length >= 2 && asked.length <= 4, `${asked.length} requests`);
  assert.equal(asked[0], '?after=0&limit=1000');
  assert.equal(asked[1], '?after=7&limit=1000&wait=0');
});
