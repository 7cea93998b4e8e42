// The npm capnweb client timing calls over HTTP batch, for benches/rpc.rs (which starts the
// server and deploys `math`, whose default export has add(a, b)). Usage:
//   node bench.mjs URL ROUNDS
// Prints one JSON line: p50 and p99, in microseconds, of one call per batch (a new session
// each time, as `newHttpBatchRpcSession(url)` makes one) and of 100 calls in one batch.

import { newHttpBatchRpcSession } from "capnweb";

const [url, roundsArg] = process.argv.slice(2);
const rounds = Number(roundsArg);

function percentiles(times) {
  times.sort((a, b) => a - b);
  const at = (p) => Math.round(times[Math.round((times.length - 1) * p)] * 1000);
  return { p50: at(0.5), p99: at(0.99) };
}

async function oneCall(i) {
  const api = newHttpBatchRpcSession(url);
  if ((await api.add(i, 1)) !== i + 1) throw new Error("a wrong sum");
}

async function hundredCalls(i) {
  const api = newHttpBatchRpcSession(url);
  const calls = [];
  for (let k = 0; k < 100; k++) calls.push(api.add(i, k));
  const sums = await Promise.all(calls);
  if (sums[99] !== i + 99) throw new Error("a wrong sum");
}

async function time(run, n) {
  for (let i = 0; i < 20; i++) await run(i);
  const times = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    await run(i);
    times.push(performance.now() - started);
  }
  return percentiles(times);
}

const one = await time(oneCall, rounds);
const hundred = await time(hundredCalls, Math.max(10, Math.round(rounds / 5)));
console.log(JSON.stringify({ one, hundred }));
