// A full queue (429) and a result rotated out of the result cache (410), on a server with a
// short queue (--max-queued 2) and a small result cache (--result-cap-bytes 2500).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { FunctionClient } from '../dist/index.js';
import { failure, firstLine, startServer } from './harness.mjs';

let server;

before(async () => {
  server = await startServer({ args: ['--max-queued', '2', '--result-cap-bytes', '2500'] });
});

after(async () => {
  await server?.stop();
});

test('429 when the queue is full, 410 for a result rotated out', async () => {
  const client = new FunctionClient({ baseUrl: server.baseUrl });
  await client.deploy(
    "export default async (e) => { await new Promise((r) => setTimeout(r, e.ms)); return 'x'.repeat(1000) }",
    { id: 'wait', limits: { concurrency: 1 } },
  );
  const first = await client.call('wait', { ms: 2000 });
  // Once it runs (its logs say so), the next two calls fill the queue.
  const running = await firstLine(
    client.logs('wait', { follow: true, wait: 5, signal: AbortSignal.timeout(30_000) }),
    (line) => line.message.includes(`RUNNING ${first.callId}`),
  );
  assert.ok(running, 'the first call started');
  const queued = [await client.call('wait', { ms: 0 }), await client.call('wait', { ms: 0 })];

  const full = await failure(client.call('wait', { ms: 0 }));
  assert.deepEqual([full.status, full.code], [429, 'queue_full']);
  // Synchronous invocations wait in the same line.
  const invoke = await failure(client.invoke('wait', { ms: 0 }));
  assert.deepEqual([invoke.status, invoke.code], [429, 'queue_full']);

  // Three results of about 1 kB: the oldest is rotated out of the 2.5 kB cache.
  const last = await client.result(queued[1].callId, { wait: 60 });
  assert.equal(last.state, 'finished');
  assert.equal(last.data, 'x'.repeat(1000));
  const gone = await failure(client.result(first.callId));
  assert.deepEqual([gone.status, gone.code], [410, 'gone']);
  const middle = await client.result(queued[0].callId);
  assert.equal(middle.state, 'finished');
});
