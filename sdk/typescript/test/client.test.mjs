// The client against a real functions-host server (FUNCTIONS_HOST_BIN) with no API keys:
// the README's snippet, every method, and the errors each status stands for.

import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';

import { FunctionClient, FunctionError } from '../dist/index.js';
import { failure, firstLine, startServer, wasiHello } from './harness.mjs';

const HELLO = "export default async (event) => { console.log('greeting ' + event.name); return { message: 'Hello, ' + event.name + '!' } }";
const ECHO = `export default {
  async fetch(request) {
    const url = new URL(request.url);
    return Response.json({
      method: request.method,
      path: url.pathname,
      query: url.search,
      prefix: request.headers.get('x-forwarded-prefix'),
      type: request.headers.get('content-type'),
      custom: request.headers.get('x-custom'),
      body: await request.text(),
    }, { headers: { 'x-echo': '1' } });
  },
}`;
const THROWER = `function explode(what) {
  throw new Error('boom: ' + what);
}
export default (event) => explode(event.what);`;

let server;
let client;

before(async () => {
  server = await startServer();
  client = new FunctionClient({ baseUrl: server.baseUrl });
  await client.deploy(HELLO, { id: 'hello', language: 'javascript' });
  await client.deploy(ECHO, { id: 'echo', language: 'javascript' });
});

after(async () => {
  await server?.stop();
});

describe('invoke', () => {
  test('POSTs an event as JSON to /fn/{name}/', async () => {
    const { data, status, headers } = await client.invoke('echo', { a: 1 });
    assert.equal(status, 200);
    assert.equal(headers.get('x-echo'), '1');
    assert.deepEqual(data, {
      method: 'POST',
      path: '/',
      query: '',
      prefix: '/fn/echo',
      type: 'application/json',
      custom: null,
      body: '{"a":1}',
    });
    assert.equal((await client.invoke('echo')).data.body, '', 'no event, no body');
  });

  test('sends a Request with its method, headers, body, path and query', async () => {
    const request = new Request('http://anywhere/a/b?x=1&y=2', {
      method: 'PATCH',
      headers: { 'content-type': 'text/plain', 'x-custom': 'yes' },
      body: 'body!',
    });
    const { data } = await client.invoke('echo', request);
    assert.deepEqual(data, {
      method: 'PATCH',
      path: '/a/b',
      query: '?x=1&y=2',
      prefix: '/fn/echo',
      type: 'text/plain',
      custom: 'yes',
      body: 'body!',
    });
    const likeOne = await client.invoke('echo', { url: '/c', method: 'PUT', headers: { 'x-custom': 'like' }, body: 'b' });
    assert.deepEqual([likeOne.data.method, likeOne.data.path, likeOne.data.custom, likeOne.data.body], ['PUT', '/c', 'like', 'b']);
  });

  test('takes a method, path and headers as options', async () => {
    const { data } = await client.invoke('echo', undefined, {
      method: 'GET',
      path: '/p/q?r=1',
      headers: { 'x-custom': 'option' },
    });
    assert.deepEqual([data.method, data.path, data.query, data.custom, data.body], ['GET', '/p/q', '?r=1', 'option', '']);
  });

  test("answers text as a string, and returns a function's own non-2xx response", async () => {
    await client.deploy(
      `export default { fetch: (request) => new URL(request.url).pathname === '/missing'
        ? Response.json({ error: { code: 'not_found', message: 'its own 404' } }, { status: 404 })
        : new Response('plain text', { status: 418 }) }`,
      { id: 'own-status', language: 'javascript' },
    );
    const text = await client.invoke('own-status', undefined, { method: 'GET' });
    assert.deepEqual([text.status, text.data], [418, 'plain text']);
    const missing = await client.invoke('own-status', undefined, { method: 'GET', path: '/missing' });
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.data, { error: { code: 'not_found', message: 'its own 404' } });
    assert.equal(missing.headers.get('x-functions-host-error'), null);
  });
});

describe('deploy', () => {
  test('one TypeScript file, named after the language', async () => {
    const info = await client.deploy('export default (e: { n: number }): number => e.n * 2', {
      id: 'double',
      language: 'typescript',
    });
    assert.deepEqual([info.name, info.version, info.language, info.entry], ['double', 1, 'typescript', 'index.ts']);
    assert.equal(info.url, `${server.baseUrl}/fn/double/`);
    assert.match(info.callUrl, new RegExp(`^${server.baseUrl}/call/double/[^/]+/$`));
    assert.equal(typeof info.createdAt, 'string');
    assert.equal((await client.invoke('double', { n: 21 })).data, 42);
  });

  test('several files with an entry, env, bindings, limits, grants and isolation', async () => {
    await client.deploy('export default { add(a, b) { return a + b } }', { id: 'math', language: 'javascript' });
    const files = {
      'main.ts': "import { twice } from './lib.ts';\nexport default async (event: { x: number }, env: any) => ({ sum: await env.MATH.add(event.x, 1), twice: twice(event.x), greeting: env.GREETING })",
      'lib.ts': 'export const twice = (x: number) => 2 * x;',
    };
    const info = await client.deploy(files, {
      id: 'composed',
      entry: 'main.ts',
      env: { GREETING: 'hi' },
      bindings: { MATH: 'math' },
      limits: { cpuMs: 500, wallClockMs: 5000, memoryMb: 64, concurrency: 3 },
      allowNet: ['example.com'],
      isolation: 'function',
      public: false,
    });
    assert.deepEqual(info.limits, { cpuMs: 500, wallClockMs: 5000, memoryMb: 64, concurrency: 3 });
    assert.equal(info.isolation, 'function');
    assert.equal(info.public, false);
    assert.deepEqual((await client.invoke('composed', { x: 20 })).data, { sum: 21, twice: 40, greeting: 'hi' });
    const details = await client.get('composed');
    assert.deepEqual(details.files.sort(), ['lib.ts', 'main.ts']);
    assert.equal(details.source, files['main.ts']);
    assert.deepEqual(details.env, ['GREETING']);
    assert.deepEqual(details.bindings, { MATH: { function: 'math' } });
    assert.deepEqual(details.allowNet, ['example.com']);
  });

  test('a WebAssembly binary, as it is and in a manifest', async () => {
    const raw = await client.deploy(wasiHello('hello from wasm'), { id: 'wasm-hello' });
    assert.equal(raw.language, 'wasm');
    assert.equal((await client.invoke('wasm-hello')).data, 'hello from wasm');
    const manifest = await client.deploy(wasiHello('again').buffer, { id: 'wasm-env', env: { WHO: 'me' } });
    assert.equal(manifest.language, 'wasm');
    assert.equal((await client.invoke('wasm-env')).data, 'again');
    const details = await client.get('wasm-env');
    assert.deepEqual(details.env, ['WHO']);
    assert.equal(details.wasm.kind, 'module');
  });
});

test('list, get, rotateToken and delete', async () => {
  await client.deploy(HELLO, { id: 'short-lived' });
  assert.ok((await client.list()).some((f) => f.name === 'short-lived'));
  const before = await client.get('short-lived');
  assert.equal(before.source, HELLO);
  const rotated = await client.rotateToken('short-lived');
  assert.equal(rotated.name, 'short-lived');
  assert.notEqual(rotated.callUrl, before.callUrl);
  assert.equal((await client.get('short-lived')).callUrl, rotated.callUrl);
  // The new call address answers; the old one no longer does.
  const byToken = await fetch(rotated.callUrl, { method: 'POST', body: '{"name":"token"}' });
  assert.deepEqual(await byToken.json(), { message: 'Hello, token!' });
  assert.equal((await fetch(before.callUrl, { method: 'POST', body: '{}' })).status, 404);
  await client.delete('short-lived');
  assert.ok(!(await client.list()).some((f) => f.name === 'short-lived'));
  const gone = await failure(client.get('short-lived'));
  assert.deepEqual([gone.status, gone.code], [404, 'not_found']);
  const again = await failure(client.delete('short-lived'));
  assert.deepEqual([again.status, again.code], [404, 'not_found']);
});

describe('asynchronous calls', () => {
  test('call, then result: pending, then finished, then forgotten', async () => {
    await client.deploy('export default async (e) => { await new Promise((r) => setTimeout(r, e.ms)); return { slept: e.ms } }', {
      id: 'sleepy',
    });
    const { callId } = await client.call('sleepy', { ms: 1500 });
    assert.equal(typeof callId, 'string');
    const early = await client.result(callId);
    assert.ok(['pending', 'running'].includes(early.state), JSON.stringify(early));
    assert.equal(early.callId, callId);
    const done = await client.result(callId, { wait: 60 });
    assert.equal(done.state, 'finished');
    assert.deepEqual([done.status, done.data], [200, { slept: 1500 }]);
    assert.equal(done.headers.get('x-call-state'), 'finished');
    const fetched = await failure(client.result(callId));
    assert.deepEqual([fetched.status, fetched.code], [404, 'not_found']);
  });

  test("a finished call's own non-2xx response is returned; a failed call throws", async () => {
    await client.deploy(THROWER, { id: 'thrower' });
    const own = await client.call('own-status');
    const result = await client.result(own.callId, { wait: 60 });
    assert.deepEqual([result.state, result.status, result.data], ['finished', 418, 'plain text']);
    const { callId } = await client.call('thrower', { what: 'later' });
    const err = await failure(client.result(callId, { wait: 60 }));
    assert.deepEqual([err.status, err.code, err.callId], [500, 'function_error', callId]);
    assert.match(err.message, /boom: later/);
    assert.match(err.remoteStack, /explode/);
  });

  test('unknown calls and functions are 404', async () => {
    const unknown = await failure(client.result('nonsense'));
    assert.deepEqual([unknown.status, unknown.code], [404, 'not_found']);
    const nobody = await failure(client.call('nobody', {}));
    assert.deepEqual([nobody.status, nobody.code], [404, 'not_found']);
  });
});

describe('logs', () => {
  test('pages through the stored lines', async () => {
    await client.deploy(HELLO, { id: 'chatty' });
    for (const name of ['one', 'two', 'three']) await client.invoke('chatty', { name });
    const all = [];
    for await (const line of client.logs('chatty')) all.push(line);
    const greetings = all.filter((l) => l.message.startsWith('greeting ')).map((l) => l.message);
    assert.deepEqual(greetings, ['greeting one', 'greeting two', 'greeting three']);
    const one = all.find((l) => l.message === 'greeting one');
    assert.equal(typeof one.id, 'number');
    assert.ok(!Number.isNaN(Date.parse(one.timestamp)), one.timestamp);
    assert.equal(one.source, 'function');
    assert.equal(typeof one.level, 'string');
    // A page of one line at a time reads the same lines, in order.
    const paged = [];
    for await (const line of client.logs('chatty', { limit: 1 })) paged.push(line);
    assert.deepEqual(paged, all);
    // And `after` starts after a line.
    const rest = [];
    for await (const line of client.logs('chatty', { after: one.id })) rest.push(line);
    assert.deepEqual(rest, all.filter((l) => l.id > one.id));
    const unknown = await failure(firstLine(client.logs('nobody'), () => true));
    assert.equal(unknown.status, 404);
  });

  test('follow yields a line logged after the iterator started, and ends when the signal aborts', async () => {
    await client.deploy(HELLO, { id: 'followed' });
    await client.invoke('followed', { name: 'before' });
    const signal = AbortSignal.timeout(30_000);
    const lines = client.logs('followed', { follow: true, wait: 10, signal });
    assert.ok(await firstLine(lines, (line) => line.message === 'greeting before'));
    // The iterator is asking for the next line (a long poll) while the function logs one.
    const next = firstLine(lines, (line) => line.message === 'greeting after');
    await new Promise((resolve) => setTimeout(resolve, 300));
    await client.invoke('followed', { name: 'after' });
    const followed = await next;
    assert.ok(followed, 'the followed line arrived before the signal aborted');
    assert.ok(!signal.aborted);
    await lines.return();

    const controller = new AbortController();
    const quiet = (async () => {
      const seen = [];
      for await (const line of client.logs('followed', { follow: true, after: followed.id, signal: controller.signal })) {
        seen.push(line);
      }
      return seen;
    })();
    setTimeout(() => controller.abort(), 500);
    const seen = await quiet; // aborting ends the iteration without an error
    assert.ok(!seen.some((l) => l.message.startsWith('greeting')), JSON.stringify(seen));
  });
});

describe('errors', () => {
  test('400: a bad name, and code that does not compile (with its position)', async () => {
    const bad = await failure(client.deploy('export default () => 1', { id: 'Bad Name!' }));
    assert.deepEqual([bad.status, bad.code], [400, 'bad_request']);
    const source = 'const a = 1;\nconst b = 2;\nexport default (): number => { return a + ;\n}\n';
    const compile = await failure(client.deploy(source, { id: 'broken', language: 'typescript' }));
    assert.deepEqual(
      [compile.status, compile.code, compile.file, compile.line],
      [400, 'compile_error', 'index.ts', 3],
    );
    assert.equal(typeof compile.column, 'number');
    assert.ok(compile.column > 0, `column ${compile.column}`);
    const js = await failure(client.deploy('export default () => {\n  return 1 +;\n}', { id: 'broken-js' }));
    assert.deepEqual([js.code, js.file, js.line], ['compile_error', 'index.js', 2]);
    assert.match(js.message, /SyntaxError|Unexpected/);
  });

  test('403: requests from another site, and for another host name', async () => {
    // A browser on another site sends its Origin: a server without keys refuses /api to it.
    const browser = new FunctionClient({
      baseUrl: server.baseUrl,
      fetch: (url, init) => {
        const headers = new Headers(init?.headers);
        headers.set('origin', 'http://evil.example');
        return fetch(url, { ...init, headers });
      },
    });
    const crossOrigin = await failure(browser.list());
    assert.deepEqual([crossOrigin.status, crossOrigin.code], [403, 'cross_origin']);
    // fetch sets Host itself; a fetch over node:http can name another host (DNS rebinding).
    const rebound = new FunctionClient({ baseUrl: server.baseUrl, fetch: fetchWithHost('evil.example') });
    const hostNotAllowed = await failure(rebound.invoke('hello', { name: 'x' }));
    assert.deepEqual([hostNotAllowed.status, hostNotAllowed.code], [403, 'host_not_allowed']);
  });

  test('404: an unknown function', async () => {
    const err = await failure(client.invoke('nobody-here', {}));
    assert.deepEqual([err.status, err.code], [404, 'not_found']);
    assert.match(err.message, /nobody-here/);
  });

  test('413: a payload over 5 MB, code over the deploy limit', async () => {
    const big = { blob: 'x'.repeat(5 * 1024 * 1024) };
    const invoke = await failure(client.invoke('hello', big));
    assert.deepEqual([invoke.status, invoke.code], [413, 'payload_too_large']);
    const call = await failure(client.call('hello', big));
    assert.deepEqual([call.status, call.code], [413, 'payload_too_large']);
    const deploy = await failure(client.deploy(`// ${'x'.repeat(50 * 1024 * 1024)}\nexport default () => 1`, { id: 'huge' }));
    assert.deepEqual([deploy.status, deploy.code], [413, 'payload_too_large']);
  });

  test('500: a function that throws, with its message and stack', async () => {
    await client.deploy(THROWER, { id: 'thrower' });
    const err = await failure(client.invoke('thrower', { what: 'kaput' }));
    assert.deepEqual([err.status, err.code], [500, 'function_error']);
    assert.match(err.message, /boom: kaput/);
    assert.match(err.remoteStack, /explode/);
    assert.match(err.remoteStack, /index\.js:2/);
  });

  test('504: a function past its CPU time limit', async () => {
    await client.deploy('export default () => { for (;;) {} }', { id: 'spin', limits: { cpuMs: 200 } });
    const err = await failure(client.invoke('spin', {}));
    assert.deepEqual([err.status, err.code], [504, 'time_limit']);
    assert.match(err.message, /200 ms/);
  });
});

test('the client runs inside a function and invokes another function', async () => {
  const { readFile } = await import('node:fs/promises');
  const sdk = await readFile(new URL('../dist/index.js', import.meta.url), 'utf8');
  const handler = `import { FunctionClient, FunctionError } from './client.js';
export default async (event) => {
  const client = new FunctionClient({ baseUrl: event.baseUrl });
  const result = await client.invoke('hello', { name: 'from inside' });
  let missing;
  try {
    await client.get('nobody-at-all');
  } catch (err) {
    missing = err instanceof FunctionError ? [err.status, err.code] : String(err);
  }
  const names = (await client.list()).map((f) => f.name);
  return { data: result.data, status: result.status, missing, sees: names.includes('inside') };
};`;
  const info = await client.deploy(
    { 'index.js': handler, 'client.js': sdk },
    { id: 'inside', entry: 'index.js', allowNet: [server.address] },
  );
  assert.equal(info.language, 'javascript');
  const { data, status } = await client.invoke('inside', { baseUrl: server.baseUrl });
  assert.equal(status, 200, JSON.stringify(data));
  assert.deepEqual(data, {
    data: { message: 'Hello, from inside!' },
    status: 200,
    missing: [404, 'not_found'],
    sees: true,
  });
  // Without the grant, the function's fetch is refused: a network_error inside, a 500 outside.
  await client.deploy(
    { 'index.js': handler, 'client.js': sdk },
    { id: 'inside-ungranted', entry: 'index.js' },
  );
  const refused = await failure(client.invoke('inside-ungranted', { baseUrl: server.baseUrl }));
  assert.equal(refused.status, 500);
  assert.match(refused.message, /cannot reach the server|not allowed/);
});

/** A fetch over node:http that sends `host` as the Host header (the global fetch sets its own). */
function fetchWithHost(host) {
  return (url, init = {}) =>
    new Promise((resolve, reject) => {
      const headers = Object.fromEntries(new Headers(init.headers));
      headers.host = host;
      const request = httpRequest(url, { method: init.method ?? 'GET', headers }, (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => {
          const responseHeaders = new Headers();
          for (const [name, value] of Object.entries(response.headers)) {
            for (const one of [value].flat()) responseHeaders.append(name, one);
          }
          resolve(new Response(Buffer.concat(chunks), { status: response.statusCode, headers: responseHeaders }));
        });
        response.on('error', reject);
      });
      request.on('error', reject);
      request.end(typeof init.body === 'string' ? init.body : undefined);
    });
}
