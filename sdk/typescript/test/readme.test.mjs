// The snippet README.md shows under "The TypeScript SDK", taken from README.md itself and run as
// written (only the server's address differs) in Node and in Deno, against a real server.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';

import { FunctionClient } from '../dist/index.js';
import { startServer } from './harness.mjs';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..');

/** The first ```typescript block after the README's "## The TypeScript SDK" heading. */
async function snippet() {
  const readme = await readFile(join(pkg, '../../README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## The TypeScript SDK\n'));
  const block = /```typescript\n([\s\S]*?)```/.exec(section);
  assert.ok(block, 'README.md has no TypeScript SDK snippet');
  return block[1];
}

let server;
let source;

before(async () => {
  server = await startServer();
  source = (await snippet()).replaceAll('http://127.0.0.1:8787', server.baseUrl);
  assert.notEqual(source, await snippet(), 'the snippet names http://127.0.0.1:8787');
});

after(() => server?.stop());

/** Deploys the function the snippet invokes first, as the README's reader would have. */
async function deployMyFunction() {
  await new FunctionClient({ baseUrl: server.baseUrl }).deploy(
    "export default (event) => ({ message: `Hello, ${event.name}!` })",
    { id: 'my-function', language: 'javascript' },
  );
}

/** After the snippet: its deploy made version N+1 of my-function, in TypeScript. */
async function assertRedeployed(before) {
  const fn = await new FunctionClient({ baseUrl: server.baseUrl }).get('my-function');
  assert.equal(fn.version, before + 1);
  assert.equal(fn.language, 'typescript');
}

const env = { ...process.env };
delete env.FUNCTIONS_API_KEY;

test('the README snippet runs as written in Node', async () => {
  await deployMyFunction();
  const { version } = await new FunctionClient({ baseUrl: server.baseUrl }).get('my-function');
  // Inside the package, so `import ... from 'functions-host-client'` resolves to it (self-reference).
  const file = join(pkg, '.readme-snippet.mjs');
  await writeFile(file, source);
  try {
    const { stdout } = await run(process.execPath, [file], { env });
    assert.equal(stdout.trim(), "{ message: 'Hello, World!' }");
  } finally {
    await rm(file, { force: true });
  }
  await assertRedeployed(version);
});

test('the README snippet runs as written in Deno', async () => {
  await deployMyFunction();
  const { version } = await new FunctionClient({ baseUrl: server.baseUrl }).get('my-function');
  const deno = join(pkg, 'node_modules/.bin/deno');
  const file = join(pkg, '.readme-snippet.ts');
  const importMap = join(pkg, '.readme-import-map.json');
  await writeFile(file, source);
  await writeFile(importMap, JSON.stringify({ imports: { 'functions-host-client': './dist/index.js' } }));
  try {
    const { stdout } = await run(
      deno,
      ['run', '--no-config', '--no-lock', `--import-map=${importMap}`, `--allow-net=${server.address}`,
        '--allow-env=FUNCTIONS_API_KEY', file],
      { env: { ...env, DENO_DIR: join(pkg, 'node_modules/.deno'), NO_COLOR: '1' } },
    );
    assert.equal(stdout.trim(), '{ message: "Hello, World!" }');
  } finally {
    await rm(file, { force: true });
    await rm(importMap, { force: true });
  }
  await assertRedeployed(version);
});
