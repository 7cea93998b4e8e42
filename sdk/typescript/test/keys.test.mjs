// A server with API keys (FUNCTIONS_HOST_API_KEYS): 401 without a valid key, each key's own
// functions, private functions, and a spent request quota (429 with Retry-After).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { FunctionClient } from '../dist/index.js';
import { failure, startServer } from './harness.mjs';

let server;

before(async () => {
  server = await startServer({
    env: { FUNCTIONS_HOST_API_KEYS: 'alpha, beta, metered requests=2/minute' },
  });
});

after(async () => {
  await server?.stop();
});

test('401 without a key or with a wrong one; a key sees its own functions', async () => {
  for (const apiKey of [undefined, '', 'alph', 'alpha2']) {
    const client = new FunctionClient({ baseUrl: server.baseUrl, apiKey });
    const err = await failure(client.list());
    assert.deepEqual([err.status, err.code], [401, 'unauthorized'], `apiKey ${apiKey}`);
    const deploy = await failure(client.deploy('export default () => 1', { id: 'nope' }));
    assert.equal(deploy.status, 401);
  }
  const alpha = new FunctionClient({ baseUrl: server.baseUrl, apiKey: 'alpha' });
  const info = await alpha.deploy("export default (e) => ({ message: 'Hello, ' + e.name + '!' })", { id: 'hello' });
  assert.ok(info.owner, 'a function belongs to its key');
  assert.deepEqual((await alpha.list()).map((f) => f.name), ['hello']);
  // Invoking a public function needs no key.
  const anyone = new FunctionClient({ baseUrl: server.baseUrl });
  assert.deepEqual((await anyone.invoke('hello', { name: 'Ada' })).data, { message: 'Hello, Ada!' });
  // Another key does not see it.
  const beta = new FunctionClient({ baseUrl: server.baseUrl, apiKey: 'beta' });
  assert.deepEqual(await beta.list(), []);
  const hidden = await failure(beta.get('hello'));
  assert.deepEqual([hidden.status, hidden.code], [404, 'not_found']);
});

test('a private function needs a key to invoke', async () => {
  const alpha = new FunctionClient({ baseUrl: server.baseUrl, apiKey: 'alpha' });
  await alpha.deploy("export default () => 'secret'", { id: 'private', public: false });
  assert.equal((await alpha.invoke('private')).data, 'secret');
  const anyone = new FunctionClient({ baseUrl: server.baseUrl });
  const refused = await failure(anyone.invoke('private'));
  assert.deepEqual([refused.status, refused.code], [401, 'unauthorized']);
  const beta = new FunctionClient({ baseUrl: server.baseUrl, apiKey: 'beta' });
  const hidden = await failure(beta.invoke('private'));
  assert.deepEqual([hidden.status, hidden.code], [404, 'not_found']);
});

test('429 with retryAfter once a key has spent its request quota', async () => {
  const metered = new FunctionClient({ baseUrl: server.baseUrl, apiKey: 'metered' });
  await metered.list();
  await metered.list();
  const spent = await failure(metered.list());
  assert.deepEqual([spent.status, spent.code], [429, 'quota_exceeded']);
  assert.equal(typeof spent.retryAfter, 'number');
  assert.ok(spent.retryAfter >= 1 && spent.retryAfter <= 60, `retryAfter ${spent.retryAfter}`);
});

test("a function's redirect is its answer: never followed with the caller's key", async () => {
  const alpha = new FunctionClient({ baseUrl: server.baseUrl, apiKey: 'alpha' });
  await alpha.deploy("export default () => 'mine'", { id: 'precious' });
  const { callUrl } = await alpha.get('precious');
  // Another key's function points its callers at alpha's token rotation, keeping method and body.
  const beta = new FunctionClient({ baseUrl: server.baseUrl, apiKey: 'beta' });
  for (const [id, status] of [['evil307', 307], ['evil302', 302]]) {
    await beta.deploy(
      `export default { fetch: () => new Response(null, { status: ${status}, headers: { location: '/api/functions/precious/token' } }) }`,
      { id },
    );
    const answer = await alpha.invoke(id, { name: 'Ada' });
    assert.equal(answer.status, status);
    assert.equal(answer.headers.get('location'), '/api/functions/precious/token');
  }
  assert.equal((await alpha.get('precious')).callUrl, callUrl, 'the token was not rotated');
});
