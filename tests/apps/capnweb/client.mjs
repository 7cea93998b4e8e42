// The npm capnweb client against a functions-host server, as a user's Node program would call a
// function: driven by tests/e2e/capnweb.rs. Usage:
//   node --experimental-websocket client.mjs BASE_URL API_KEY
// BASE_URL serves `api` (public; tests/e2e/capnweb.rs's API) and `vault` (private: needs API_KEY).
// Prints `ok NAME` for each check that passed; the first failure throws (exit code 1).

import assert from "node:assert/strict";
import { newHttpBatchRpcSession, newWebSocketRpcSession } from "capnweb";

const [base, key] = process.argv.slice(2);
assert.ok(base && key, "usage: client.mjs BASE_URL API_KEY");
assert.equal(typeof globalThis.WebSocket, "function", "this Node has no WebSocket: run it with --experimental-websocket");
const wsBase = base.replace(/^http/, "ws");

// Every HTTP batch is one fetch: counted, to see pipelined calls go in one request.
let requests = 0;
const realFetch = globalThis.fetch;
globalThis.fetch = (...args) => {
  requests++;
  return realFetch(...args);
};

// capnweb's promises are callable stubs, not Promises: awaited in a function.
const rejects = (promise, expected) => assert.rejects(async () => await promise, expected);

async function check(name, body) {
  await body();
  console.log(`ok ${name}`);
}

const batch = () => newHttpBatchRpcSession(`${base}/rpc/api`);

await check("batch: a method call", async () => {
  assert.equal(await batch().add(1, 2), 3);
});

await check("batch: pipelining in one request", async () => {
  const api = batch();
  const before = requests;
  const user = api.getUser(1);
  const [name, greeting, tags] = await Promise.all([user.name, api.greet(user.name), user.tags]);
  assert.deepEqual([name, greeting, tags], ["Ada", "Hello, Ada!", ["math", "engines"]]);
  assert.equal(requests - before, 1);
});

await check("batch: errors keep their type and message", async () => {
  await rejects(batch().fail("x is not a number"), (err) => {
    assert.ok(err instanceof TypeError, `${err}`);
    assert.equal(err.message, "x is not a number");
    return true;
  });
  await rejects(batch().getUser(9), { message: "no user 9" });
  await rejects(batch().nothing(), { name: "TypeError", message: '"nothing" is not a method of the function called' });
});

await check("batch: Uint8Array, Date and bigint both ways", async () => {
  const api = batch();
  const value = { when: new Date(1234), data: new Uint8Array([1, 2, 3, 250]), big: 2n ** 70n };
  const [described, back, made] = await Promise.all([api.describe(value), api.roundTrip(value), api.makeBytes(5)]);
  assert.deepEqual(described, { date: true, ms: 1234, bytes: true, sum: 256, big: true, doubled: 2n ** 71n });
  assert.ok(back.when instanceof Date && back.when.getTime() === 1234);
  assert.ok(back.data instanceof Uint8Array);
  assert.deepEqual([...back.data], [1, 2, 3, 250]);
  assert.equal(back.big, 2n ** 70n);
  assert.ok(made instanceof Uint8Array);
  assert.deepEqual([...made], [0, 1, 2, 3, 4]);
});

await check("batch: undefined, non-finite numbers and nested arrays", async () => {
  const special = await batch().special();
  assert.deepEqual(special, { u: undefined, inf: Infinity, neg: -Infinity, nan: NaN, arr: [[1, 2], []] });
  assert.deepEqual(await batch().roundTrip([undefined, [NaN], { a: [[]] }]), [undefined, [NaN], { a: [[]] }]);
});

await check("batch: a Map is refused with a TypeError", async () => {
  await rejects(batch().asMap(), (err) => {
    assert.ok(err instanceof TypeError, `${err}`);
    assert.match(err.message, /a Map cannot be sent over capnweb/);
    return true;
  });
});

await check("batch: map() runs on the server", async () => {
  const api = batch();
  const before = requests;
  const [names, greetings] = await Promise.all([
    api.listUsers().map((user) => user.name),
    api.listUsers().map((user) => api.greet(user.name)),
  ]);
  assert.deepEqual(names, ["Ada", "Grace"]);
  assert.deepEqual(greetings, ["Hello, Ada!", "Hello, Grace!"]);
  assert.equal(requests - before, 1);
});

await check("batch: a callback cannot be called back", async () => {
  await rejects(batch().twice((x) => x, 1), { message: /use a WebSocket session/ });
});

await check("websocket: RpcTargets, callbacks, pipelining and errors", async () => {
  const api = newWebSocketRpcSession(`${wsBase}/rpc/api`);
  const counter = await api.counter(5);
  assert.equal(await counter.increment(2), 7);
  assert.equal(await counter.increment(3), 10);
  assert.equal(await counter.value, 10);
  // Pipelined: increment is called on a counter not yet received.
  assert.equal(await api.counter(1).increment(4), 5);
  assert.equal(await api.twice((x) => x * 3, 2), 18);
  await rejects(api.fail("over a socket"), { name: "TypeError", message: "over a socket" });
  const back = await api.roundTrip({ when: new Date(7), big: -5n, data: new Uint8Array([9]) });
  assert.deepEqual({ ...back, data: [...back.data] }, { when: new Date(7), big: -5n, data: [9] });
  counter[Symbol.dispose]();
  api[Symbol.dispose]();
});

await check("private: refused without the key, served with it", async () => {
  await rejects(newHttpBatchRpcSession(`${base}/rpc/vault`).secret(), { message: /401/ });
  await rejects(newHttpBatchRpcSession(`${base}/rpc/vault?api_key=wrong`).secret(), { message: /401/ });
  const request = new Request(`${base}/rpc/vault`, { headers: { Authorization: `Bearer ${key}` } });
  assert.equal(await newHttpBatchRpcSession(request).secret(), "the vault is open");
  assert.equal(await newHttpBatchRpcSession(`${base}/rpc/vault?api_key=${key}`).secret(), "the vault is open");
  const refused = newWebSocketRpcSession(`${wsBase}/rpc/vault`);
  await rejects(refused.secret());
  const socket = newWebSocketRpcSession(`${wsBase}/rpc/vault?api_key=${encodeURIComponent(key)}`);
  assert.equal(await socket.secret(), "the vault is open");
  socket[Symbol.dispose]();
});

console.log("done");
