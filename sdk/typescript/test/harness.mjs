// Starts the real functions-host server for the tests (the binary named by FUNCTIONS_HOST_BIN)
// on a free port with fresh data, and stops it. Not a test file itself: it only exports.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { FunctionError } from '../dist/index.js';

/** The functions-host binary the tests run, from FUNCTIONS_HOST_BIN. */
export function binary() {
  const bin = process.env.FUNCTIONS_HOST_BIN;
  if (!bin) {
    throw new Error(
      'FUNCTIONS_HOST_BIN is not set: build the server (cargo build -p functions-host) and run ' +
        'FUNCTIONS_HOST_BIN=/path/to/target/debug/functions-host npm test',
    );
  }
  return bin;
}

/**
 * Starts `functions-host serve --listen 127.0.0.1:0 --data <fresh dir>` with `args` and `env`
 * (FUNCTIONS_HOST_API_KEYS only from `env`), and resolves once it says where it listens.
 */
export async function startServer({ args = [], env = {} } = {}) {
  const bin = binary();
  const data = await mkdtemp(join(tmpdir(), 'functions-host-sdk-'));
  const childEnv = { ...process.env };
  delete childEnv.FUNCTIONS_HOST_API_KEYS;
  Object.assign(childEnv, env);
  const child = spawn(
    bin,
    ['serve', '--listen', '127.0.0.1:0', '--workers', '2', '--data', data, ...args],
    { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // Should the test process end without stopping it, the server goes too.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-20_000);
  });
  // Read on after the first line too, so the server never blocks on a full pipe.
  const lines = createInterface({ input: child.stdout });
  const baseUrl = await new Promise((resolve, reject) => {
    const exited = (code, signal) =>
      reject(new Error(`${bin} exited (${code ?? signal}) before it listened:\n${stderr}`));
    child.once('exit', exited);
    child.once('error', reject);
    lines.on('line', (line) => {
      const listening = /functions-host listening on (http:\/\/\S+)/.exec(line);
      if (listening) {
        child.off('exit', exited);
        resolve(listening[1]);
      }
    });
  });
  return {
    baseUrl,
    /** host:port, as allow_net grants it. */
    address: new URL(baseUrl).host,
    data,
    /** What the server wrote on stderr (the end of it). */
    stderr: () => stderr,
    /** Stops the server (SIGTERM, SIGKILL if it takes over 10 s) and removes its data. */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      process.off('exit', killOnExit);
      await rm(data, { recursive: true, force: true });
    },
  };
}

/**
 * Resolves with the next line of async iterator `lines` that `matches` (undefined if it ends
 * first), leaving the iterator open for more.
 */
export async function firstLine(lines, matches) {
  for (;;) {
    const { value, done } = await lines.next();
    if (done) return undefined;
    if (matches(value)) return value;
  }
}

/** A WASI command module whose `_start` writes `text` to stdout (hand-assembled). */
export function wasiHello(text) {
  const utf8 = [...new TextEncoder().encode(text)];
  const leb = (n) => {
    const out = [];
    do {
      let byte = n & 0x7f;
      n >>>= 7;
      if (n !== 0) byte |= 0x80;
      out.push(byte);
    } while (n !== 0);
    return out;
  };
  const vec = (items) => [...leb(items.length), ...items.flat()];
  const name = (s) => vec([...new TextEncoder().encode(s)]);
  const section = (id, content) => [id, ...leb(content.length), ...content];
  const i32 = 0x7f;
  const body = [0x00, 0x41, 1, 0x41, 0, 0x41, 1, 0x41, 8, 0x10, 0, 0x1a, 0x0b];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    // fd_write: (fd, iovs, iovs_len, nwritten) -> errno; _start: () -> ()
    ...section(1, vec([[0x60, ...vec([i32, i32, i32, i32]), ...vec([i32])], [0x60, 0, 0]])),
    ...section(2, vec([[...name('wasi_snapshot_preview1'), ...name('fd_write'), 0x00, 0]])),
    ...section(3, vec([[1]])),
    ...section(5, vec([[0x00, 1]])),
    ...section(7, vec([[...name('memory'), 0x02, 0], [...name('_start'), 0x00, 1]])),
    ...section(10, vec([[...leb(body.length), ...body]])),
    // One iovec at 0 pointing at the text at 16 (the count written goes to 8).
    ...section(
      11,
      vec([
        [0x00, 0x41, 0, 0x0b, ...vec([16, 0, 0, 0, ...le32(utf8.length)])],
        [0x00, 0x41, 16, 0x0b, ...vec(utf8)],
      ]),
    ),
  ];
  return new Uint8Array(bytes);
}

/** `n` as 4 little-endian bytes. */
function le32(n) {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

/** The FunctionError `promise` rejects with (anything else fails the test). */
export async function failure(promise) {
  const outcome = await promise.then(
    (value) => ({ value }),
    (err) => ({ err }),
  );
  assert.ok('err' in outcome, `expected a FunctionError, got ${JSON.stringify(outcome.value)}`);
  assert.ok(outcome.err instanceof FunctionError, `not a FunctionError: ${outcome.err?.stack ?? outcome.err}`);
  return outcome.err;
}
