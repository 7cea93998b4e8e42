// Node's cold start of a Python function from a Pyodide memory snapshot: what `cargo bench
// --bench python` compares functions-host with. Pyodide's own loader boots the interpreter,
// defines the same hello function, makes a memory snapshot, then restores it ROUNDS times
// (`loadPyodide({ _loadSnapshot })`, a fresh interpreter each time) and calls hello in each.
//
//   node pyodide_restore.mjs DIR ROUNDS    # DIR: where `npm install pyodide@314.0.7` was run
//
// Prints one JSON line: each restore-and-call time in milliseconds, and the snapshot's size.

import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [dir, rounds = "20"] = process.argv.slice(2);
const { loadPyodide } = await import(
  pathToFileURL(join(dir, "node_modules", "pyodide", "pyodide.mjs")).href
);

const HELLO = `
import json
def hello(name="World"):
    return {"message": f"Hello, {name}!"}
`;

const quiet = { stdout: () => {}, stderr: () => {} };
const maker = await loadPyodide({ ...quiet, _makeSnapshot: true });
maker.runPython(HELLO);
const snapshot = maker.makeMemorySnapshot();

const times = [];
for (let i = 0; i < Number(rounds); i++) {
  const start = performance.now();
  const pyodide = await loadPyodide({ ...quiet, _loadSnapshot: snapshot });
  const hello = pyodide.globals.get("hello");
  const reply = pyodide.globals.get("json").dumps(hello.callKwargs({ name: "Node" }));
  times.push(performance.now() - start);
  if (reply !== '{"message": "Hello, Node!"}') throw new Error(`unexpected reply ${reply}`);
  hello.destroy();
}
console.log(JSON.stringify({ times_ms: times, snapshot_bytes: snapshot.byteLength }));
