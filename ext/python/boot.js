// functions-host: boots Python (Pyodide) in a function isolate, from scratch or from a memory
// snapshot, and binds the function's entry to the dispatcher. Loaded with the base snapshot;
// runs only in isolates of Python functions.
//
// Pyodide's own loader (pyodide.mjs) expects Node or a browser, so, as workerd does, this calls
// the module factory of pyodide.asm.mjs itself, with settings that hand it everything as bytes
// (see docs/python-on-pyodide.md).

import {
  op_python_boot,
  op_python_packages,
  op_python_prefault,
  op_python_restore,
  op_python_snapshot_failed,
  op_python_snapshot_made,
  op_python_stdlib,
  op_python_wasm_module,
} from "ext:core/ops";

/** The interpreter's working directory, where the function's files are. */
const HOME = "/function";
/** Where the host's Python module is written. */
const HOST_DIR = "/lib/functions-host";
const HOST_MODULE = "_functions_host";

/** Pyodide's idea of where it runs: a browser-like host that is workerd-like (no DOM). */
const RUNTIME_ENV = {
  IN_BROWSER: true,
  IN_BROWSER_MAIN_THREAD: false,
  IN_BROWSER_WEB_WORKER: false,
  IN_WORKERD: true,
  IN_NODE: false,
  IN_NODE_COMMONJS: false,
  IN_NODE_ESM: false,
  IN_DENO: false,
  IN_BUN: false,
  IN_SHELL: false,
  IN_SAFARI: false,
};

/**
 * Starts an interpreter with `createPyodideModule` (pyodide.asm.mjs's default export): the
 * WebAssembly instantiated and linked, the standard library in place, and, unless it will be
 * restored from a snapshot, Python initialised. What this does depends only on the Pyodide
 * build, so the engine does it ahead of time for interpreters to be restored (see
 * `startPython`). Resolves to what `startPython` takes.
 */
async function preparePython(createPyodideModule) {
  const boot = op_python_boot();
  const willRestore = boot.restore !== null || boot.prepareOnly;
  const out = (line) => console.log(line);
  const err = (line) => console.error(line);
  const config = {
    jsglobals: globalThis,
    args: [],
    // No PYTHONHASHSEED: the interpreter that makes the baseline snapshot seeds its hashes
    // from the operating system, and every restore keeps that seed (see README).
    env: { HOME, PYTHONINSPECT: "1" },
    packages: [],
    enableRunUntilComplete: true,
    checkAPIVersion: true,
    _makeSnapshot: false,
    BUILD_ID: boot.buildId,
    indexURL: "/nonexistent/",
    packageBaseUrl: "/nonexistent/",
    lockFileURL: "",
  };
  const API = { config, runtimeEnv: RUNTIME_ENV };
  const errorMarker = Symbol("error marker");
  const wasmModule = op_python_wasm_module();
  let exitCode;
  const settings = {
    noImageDecoding: true,
    noAudioDecoding: true,
    noWasmDecoding: false,
    noInitialRun: willRestore,
    arguments: [],
    thisProgram: "/bin/python",
    API,
    print: out,
    printErr: err,
    onExit(code) {
      exitCode = code;
    },
    locateFile(path) {
      throw new Error(`Pyodide asked for a file the host does not serve: ${path}`);
    },
    preRun: [
      (Module) => {
        const version = Module.HEAPU32[Module._Py_Version >>> 2];
        API.pyVersionTuple = [(version >>> 24) & 255, (version >>> 16) & 255, (version >>> 8) & 255];
        const [major, minor] = API.pyVersionTuple;
        const lib = `/lib/python${major}.${minor}`;
        Module.FS.mkdirTree(`${lib}/site-packages`);
        Module.FS.mkdirTree(`${lib}/lib-dynload`);
        Module.FS.writeFile(`/lib/python${major}${minor}.zip`, op_python_stdlib(), { canOwn: true });
        Module.FS.mkdirTree(HOME);
        Module.FS.chdir(HOME);
        Object.assign(Module.ENV, config.env);
      },
    ],
    instantiateWasm(imports, receive) {
      imports.env.Jsv_GetError_import = () => errorMarker;
      imports.env.JsvError_Check = (value) => value === errorMarker;
      WebAssembly.instantiate(wasmModule, imports).then(
        (instance) => receive(instance, wasmModule),
        (error) => err(`Python failed to start: ${error}`),
      );
      return {};
    },
  };
  // Emscripten takes its browser path (entropy from crypto.getRandomValues) when it sees a
  // `window`, as in workerd; there is none once the factory has looked.
  globalThis.window = {};
  let starting;
  try {
    starting = createPyodideModule(settings);
  } finally {
    delete globalThis.window;
  }
  const Module = await starting;
  if (exitCode !== undefined) throw new Error(`Python exited with status ${exitCode} while starting`);
  if (API.version !== boot.version) {
    throw new Error(`pyodide.asm.mjs is Pyodide ${API.version}, not ${boot.version}`);
  }
  // An interpreter started ahead of time has its memory's pages mapped while it waits.
  if (boot.prepareOnly) op_python_prefault(Module.HEAPU8);
  return { Module, API, willRestore, out, err };
}

/**
 * Makes an interpreter `preparePython` started the function's: restores its snapshot (if it
 * has one), writes its files and requirements, imports its module (unless the snapshot holds
 * it) and returns a module namespace for `dispatch`, whose default export calls the entry. In
 * an isolate asked to make a snapshot, hands the snapshot to the host instead.
 */
async function startPython(prepared) {
  const boot = op_python_boot();
  const { Module, API, out, err } = prepared;
  const restoring = boot.restore !== null;
  if (restoring !== prepared.willRestore || API.config.BUILD_ID !== boot.buildId) {
    throw new Error("the interpreter was prepared for another kind of start");
  }
  API.config._makeSnapshot = boot.makeSnapshot;
  let references;
  if (restoring) {
    if (Module.HEAPU8.length < boot.memoryBytes) Module.growMemory(boot.memoryBytes);
    if (!op_python_restore(Module.HEAPU8)) throw new Error("the Python snapshot does not fit the interpreter's memory");
    references = JSON.parse(boot.restore);
  }
  const pyodide = API.finalizeBootstrap(references, undefined);
  API.initializeStreams(undefined, out, err);
  // The file system is JavaScript's, not in the snapshot: the function's files and its
  // requirements are written in every interpreter.
  const FS = Module.FS;
  const write = (path, contents) => {
    const slash = path.lastIndexOf("/");
    if (slash > 0) FS.mkdirTree(path.slice(0, slash));
    FS.writeFile(path, contents);
  };
  for (const [path, text] of boot.files) write(`${HOME}/${path}`, text);
  if (boot.packages.length > 0) {
    const bytes = op_python_packages();
    const sitePackages = API.sitepackages;
    let offset = 0;
    for (const [path, length] of boot.packages) {
      write(`${sitePackages}/${path}`, bytes.subarray(offset, offset + length));
      offset += length;
    }
  }
  if (!restoring) {
    API.sys.path.insert(0, HOME);
    API._pyodide.set_excepthook();
    FS.mkdirTree(HOST_DIR);
    FS.writeFile(`${HOST_DIR}/${HOST_MODULE}.py`, boot.hostModule);
    API.sys.path.append(HOST_DIR);
  }
  const host = pyodide.pyimport(HOST_MODULE);
  if (!restoring) host.warm_up();
  host.after_restore(JSON.stringify(boot.env));
  let shape = host.shape();
  if (shape === undefined && boot.module !== null) {
    shape = host.load(boot.module, boot.entry);
    if (shape[0] === "E") throw pythonError(shape);
  }
  if (boot.makeSnapshot) {
    try {
      op_python_snapshot_made(API.makeSnapshot());
    } catch (error) {
      op_python_snapshot_failed(`${error?.message ?? error}`);
    }
    return { default: () => null };
  }
  // What other functions call through a binding: the module's public functions.
  const rpc = {};
  for (const name of JSON.parse(host.methods())) {
    rpc[name] = async (...args) => {
      let result = host.call_method(name, JSON.stringify(args));
      if (isPyProxy(result)) result = await settle(result);
      if (result[0] === "E") throw pythonError(result);
      return JSON.parse(result.slice(1));
    };
  }
  if (shape === "fetch") {
    return {
      rpc,
      default: {
        async fetch(request, env) {
          let result = host.call_fetch(request, env);
          if (isPyProxy(result)) result = await settle(result);
          if (typeof result === "string") throw pythonError(result);
          return result;
        },
      },
    };
  }
  return {
    rpc,
    async default(event) {
      let result = host.call_event(JSON.stringify(event));
      if (isPyProxy(result)) result = await settle(result);
      if (result[0] === "E") throw pythonError(result);
      return new Response(result.slice(1), { headers: { "content-type": "application/json" } });
    },
  };
}

function isPyProxy(value) {
  return value !== null && typeof value === "object" && typeof value.destroy === "function";
}

/** Awaits a Python awaitable (a coroutine the entry returned), then lets go of its proxy. */
async function settle(proxy) {
  try {
    return await proxy;
  } finally {
    proxy.destroy();
  }
}

/** A JavaScript error for a failure the host module reported ("E" and its JSON). */
function pythonError(failure) {
  const { type, message, traceback } = JSON.parse(failure.slice(1));
  const error = new Error(message);
  error.name = type;
  error.stack = traceback;
  return error;
}

globalThis.__functionsHost.preparePython = preparePython;
globalThis.__functionsHost.startPython = startPython;
