// functions-host: boots the .NET WebAssembly runtime in a function isolate and binds the C#
// function's entry to the dispatcher. Loaded with the base snapshot; runs only in isolates of
// C# functions.
//
// The runtime's loader (dotnet.js) takes a shell's path here (no window, no Node), and every
// file is handed to it as bytes: its boot configuration is replaced as it is read, the two
// JavaScript modules come as namespaces the host loaded, and `dotnet.native.wasm` as the module
// compiled once per process. The managed side is ext/dotnet/Dispatcher.cs, called through the
// runtime's mono_wasm_invoke_jsexport with a pointer to seven 32-bit words (see there).

import {
  op_dotnet_asset,
  op_dotnet_boot,
  op_dotnet_restore,
  op_dotnet_snapshot_made,
  op_dotnet_wasm_module,
} from "ext:core/ops";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The dispatcher's operations (see Dispatcher.cs). */
const BIND = 1;
const CALL = 2;
const PENDING = 3;
const SET_ENVIRONMENT = 4;
const CALL_METHOD = 5;
const LOAD_ASSEMBLY = 6;
const PROTOCOL = 7;

/** The version of the operations above, as Dispatcher.cs says it. */
const DISPATCHER_PROTOCOL = 1;

/** Names a binding's methods do not take. */
const RESERVED = new Set(["then", "constructor", "__proto__", "toString", "valueOf", "toJSON"]);

/** ICU's data loaded: the shard of English, French, Italian, German and Spanish. */
const ICU = "icudt_EFIGS.dat";

/**
 * The jiterpreter's parts, which compile hot code to WebAssembly of their own: a memory image
 * that holds their tables does not restore, so a runtime whose image is taken runs without
 * them, and a restored one turns them on again.
 */
const JITERPRETER = ["jiterpreter-traces-enabled", "jiterpreter-interp-entry-enabled", "jiterpreter-jit-call-enabled"];

/**
 * Starts the runtime with the function's assemblies (or restores it from the function's
 * snapshot), binds its entry, and returns a module namespace for `dispatch`, whose default
 * export calls the entry with the event. In an isolate asked to make a snapshot, hands the
 * snapshot to the host instead.
 */
async function startDotnet(loader, native, runtime) {
  const boot = op_dotnet_boot();
  const image = boot.restore === null ? null : JSON.parse(boot.restore);
  const wasmModule = op_dotnet_wasm_module();
  const resources = resourcesOf(boot, native, runtime, wasmModule, image !== null);
  const WebAssemblyObject = globalThis.WebAssembly;
  const { compileStreaming, instantiate } = WebAssemblyObject;
  // The loader compiles dotnet.native.wasm itself unless compileStreaming answers: it gets
  // the module compiled once per process.
  WebAssemblyObject.compileStreaming = async (response) => (await response).compiled;
  let Module;
  if (image !== null) {
    // The image holds a started runtime: where the runtime would start (mono_wasm_load_runtime,
    // after Emscripten's own start and before the runtime's JavaScript binds to it), the image
    // is copied in instead.
    WebAssemblyObject.instantiate = async (module, imports) => {
      const instance = await instantiate.call(WebAssemblyObject, module, imports);
      if (module !== wasmModule) return instance;
      const restoring = (_debug, count, keys, values) => restore(Module, image, boot.memoryBytes, count, keys, values);
      return { exports: { ...instance.exports, mono_wasm_load_runtime: restoring } };
    };
  }
  const starting = loader.dotnet
    .withModuleConfig({
      print: (line) => console.log(line),
      printErr: (line) => console.error(line),
      preRun: [(module) => (Module = module)],
      onConfigLoaded(config) {
        // The package's own configuration is an application's: it is replaced, not merged.
        config.resources = resources;
        config.mainAssemblyName = boot.dispatcher;
        config.globalizationMode = "custom";
        // The function's own variables are set once it runs (below): a snapshot holds none.
        config.environmentVariables = { TZ: "UTC" };
        config.runtimeOptions = boot.makeSnapshot ? JITERPRETER.map((option) => `--no-${option}`) : [];
        delete config.extensions;
      },
    })
    .create();
  let api;
  try {
    api = await starting;
  } finally {
    // What the function's code sees of WebAssembly is as it was.
    Object.assign(WebAssemblyObject, { compileStreaming, instantiate });
  }
  const entry = image ?? dispatcherEntry(api.Module, boot.dispatcher);
  const dispatcher = dispatcherOf(api.Module, entry);
  // A restored runtime runs with the jiterpreter, but one whose image is taken again does not.
  if (image !== null && !boot.makeSnapshot) {
    for (const option of JITERPRETER) api.Module.ccall("mono_jiterp_parse_option", "number", ["string"], [`--${option}`]);
  }
  if (image === null) {
    const protocol = dispatcher.call(PROTOCOL);
    if (protocol.ok !== DISPATCHER_PROTOCOL) {
      throw new Error(
        `${boot.dispatcher}.dll is of another version of functions-host than this host: deploy the function with this version's CLI`,
      );
    }
  }
  let assembly = boot.assembly;
  if (entry.parameters === undefined && assembly === "") {
    // A baseline: the runtime and the dispatcher, System.Text.Json warmed by its first use.
    const warmed = dispatcher.call(SET_ENVIRONMENT, "{}");
    if (warmed.error) throw dotnetError(warmed.error);
  } else if (entry.parameters === undefined) {
    // Restored from a baseline, the function's assemblies are loaded now (the entry's found by
    // the name it gives itself); booted, they were loaded with the runtime's.
    if (image !== null) {
      for (const index of boot.ownAssemblies) {
        const loaded = dispatcher.call(LOAD_ASSEMBLY, op_dotnet_asset(index));
        if (loaded.error) throw dotnetError(loaded.error);
        if (boot.assets[index][0] === `${boot.assembly}.dll`) assembly = loaded.ok;
      }
    }
    const bound = dispatcher.call(BIND, `${assembly}|${boot.entry ?? ""}`);
    if (bound.error) throw dotnetError(bound.error);
    entry.parameters = bound.ok.parameters;
    entry.methods = bound.ok.methods;
  }
  if (boot.makeSnapshot) {
    // What the image does not hold: the dispatcher's place in it, and the runtime's open files
    // beyond the standard three (Console's).
    const streams = [];
    api.Module.FS.streams.forEach((stream, fd) => {
      if (stream && fd > 2) streams.push({ fd, path: stream.path, flags: stream.flags });
    });
    op_dotnet_snapshot_made(api.Module.HEAPU8, JSON.stringify({ ...entry, streams }));
    return { default: () => null };
  }
  if (Object.keys(boot.env).length > 0) {
    const set = dispatcher.call(SET_ENVIRONMENT, JSON.stringify(boot.env));
    if (set.error) throw dotnetError(set.error);
  }
  const { parameters, methods } = entry;
  // What other functions call through a binding: the entry's class's public static methods,
  // by their names and in camelCase (`env.MATH.Add(1, 2)` or `env.MATH.add(1, 2)`), but none
  // that would make the object something else (a promise's `then`, its prototype).
  const rpc = Object.create(null);
  for (const name of methods) {
    const method = async (...args) => {
      const texts = args.map((value) => (value === undefined ? null : JSON.stringify(value)));
      const answer = await dispatcher.settle(dispatcher.call(CALL_METHOD, `${name}|${JSON.stringify(texts)}`));
      if (answer.error) throw dotnetError(answer.error);
      return answer.ok;
    };
    const camel = name[0].toLowerCase() + name.slice(1);
    for (const key of [name, camel]) {
      if (!RESERVED.has(key) && !Object.hasOwn(rpc, key) && (key === name || !methods.includes(key))) rpc[key] = method;
    }
  }
  return {
    rpc,
    async default(event) {
      const args = bind(parameters, event);
      if (typeof args === "string") return badRequest(args);
      const answer = await dispatcher.settle(dispatcher.call(CALL, JSON.stringify(args)));
      if (answer.error?.bad_event) return badRequest(answer.error.message);
      if (answer.error) throw dotnetError(answer.error);
      return answer.ok === null ? undefined : answer.ok;
    },
  };
}

/** The answer to an event that does not fit the entry's parameters. */
function badRequest(message) {
  return new Response(JSON.stringify({ error: { code: "bad_request", message } }), {
    status: 400,
    headers: { "content-type": "application/json" },
  });
}

/**
 * Copies `image` into the runtime's memory (grown to `memoryBytes`) where the runtime would have
 * started, and opens again the files it had open. The caller frees what it allocated for the
 * call (`count` keys and values) right after: those blocks are the fresh heap's, not the
 * image's, and are left alone.
 */
function restore(Module, image, memoryBytes, count, keys, values) {
  const skipped = new Set([keys, values]);
  for (let i = 0; i < count; i++) {
    skipped.add(Module.HEAP32[(keys >>> 2) + i]);
    skipped.add(Module.HEAP32[(values >>> 2) + i]);
  }
  const free = Module._free;
  Module._free = (at) => {
    if (!skipped.delete(at)) return free(at);
    if (skipped.size === 0) Module._free = free;
  };
  // Grown through sbrk, so that Emscripten's views follow.
  const end = Module._sbrk(0);
  if (memoryBytes > end && Module._sbrk(memoryBytes - end) === -1) throw new Error("the runtime's memory cannot hold the C# snapshot");
  if (!op_dotnet_restore(Module.HEAPU8)) throw new Error("the C# snapshot does not fit the runtime's memory");
  const { FS } = Module;
  for (const { fd, path, flags } of image.streams) {
    if (FS.streams[fd]) continue;
    const standard = FS.streams.findIndex((stream, at) => at <= 2 && stream && stream.path === path && stream.flags === flags);
    if (standard >= 0) FS.dupStream(FS.streams[standard], fd);
    else FS.createStream(FS.open(path, flags), fd);
  }
}

/** The loader's resources: every file as bytes or as what the host loaded. */
function resourcesOf(boot, native, runtime, wasmModule, restoring) {
  const url = "file:///dotnet/dotnet.native.wasm";
  const response = {
    ok: true,
    url,
    compiled: wasmModule,
    headers: { get: (name) => (name.toLowerCase() === "content-type" ? "application/wasm" : null) },
    arrayBuffer() {
      throw new Error("dotnet.native.wasm is handed over compiled");
    },
  };
  const resources = {
    hash: "functions-host",
    jsModuleNative: [{ name: "dotnet.native.js", moduleExports: native }],
    jsModuleRuntime: [{ name: "dotnet.runtime.js", moduleExports: runtime }],
    wasmNative: [{ name: "dotnet.native.wasm", pendingDownload: { name: "dotnet.native.wasm", url, response: Promise.resolve(response) } }],
    coreAssembly: [],
    assembly: [],
    icu: [],
  };
  // A restored runtime has every assembly in its memory already.
  if (restoring) return resources;
  boot.assets.forEach(([virtualPath, kind], index) => {
    if (kind === "icu" && virtualPath !== ICU) return;
    const bytes = op_dotnet_asset(index);
    const asset = { name: virtualPath, virtualPath, buffer: bytes.buffer };
    resources[kind].push(asset);
  });
  return resources;
}

/** The dispatcher's method and the words it is called with (see Dispatcher.cs). */
function dispatcherEntry(Module, assemblyName) {
  const cString = (text) => {
    const bytes = encoder.encode(`${text}\0`);
    const at = Module._malloc(bytes.length);
    Module.HEAPU8.set(bytes, at);
    return at;
  };
  const assembly = Module._mono_wasm_assembly_load(cString(assemblyName));
  if (!assembly) throw new Error(`the function has no ${assemblyName} assembly: deploy it with the functions-host CLI`);
  const dispatcherClass = Module._mono_wasm_assembly_find_class(assembly, cString("FunctionsHost"), cString("Dispatcher"));
  const method = dispatcherClass && Module._mono_wasm_assembly_find_method(dispatcherClass, cString("Invoke"), 1);
  if (!method) throw new Error(`${assemblyName} has no FunctionsHost.Dispatcher.Invoke`);
  return { method, words: Module._malloc(7 * 4) };
}

/** Calls into Dispatcher.cs. */
function dispatcherOf(Module, { method, words }) {
  // The runtime's timers and background work all go through safeSetTimeout: after each, calls
  // still pending are asked again.
  let waiting = [];
  const setTimer = Module.safeSetTimeout;
  Module.safeSetTimeout = (callback, delay) =>
    setTimer(() => {
      try {
        callback();
      } finally {
        const woken = waiting;
        waiting = [];
        for (const wake of woken) wake();
      }
    }, delay);
  function call(operation, input = "", id = 0) {
    const bytes = typeof input === "string" ? encoder.encode(input) : input;
    const at = bytes.length > 0 ? Module._malloc(bytes.length) : 0;
    if (at !== 0) Module.HEAPU8.set(bytes, at);
    Module.HEAP32.set([operation, operation === PENDING ? id : at, bytes.length, 0, 0, 0, 0], words >>> 2);
    Module._mono_wasm_invoke_jsexport(method, words);
    // (The memory may have grown during the call: the views are read again.)
    const answerAt = Module.HEAP32[(words >>> 2) + 5];
    const answerLength = Module.HEAP32[(words >>> 2) + 6];
    if (answerLength <= 0) throw new Error("the C# dispatcher gave no answer");
    const answer = decoder.decode(Module.HEAPU8.slice(answerAt, answerAt + answerLength));
    Module._free(answerAt);
    if (at !== 0) Module._free(at);
    return JSON.parse(answer);
  }
  async function settle(answer) {
    while (answer.pending !== undefined) {
      // Woken after the runtime's next timer; asked again after a while regardless, for a
      // task completed by anything else.
      await new Promise((wake) => waiting.push(wake));
      answer = call(PENDING, "", answer.pending);
    }
    return answer;
  }
  return { call, settle };
}

/**
 * The arguments for `parameters` from `event`, each as JSON text (null: left out), or why they
 * cannot be had: an object binds by parameter name, an array by position, and a method of one
 * parameter takes the whole event (or the one item of an array, or the member of its name; an
 * object without that member gives no argument unless the parameter is an object).
 */
function bind(parameters, event) {
  const isObject = event !== null && typeof event === "object" && !Array.isArray(event);
  let values;
  if (parameters.length === 0) {
    values = [];
  } else if (parameters.length === 1) {
    const [only] = parameters;
    const byName = isObject && Object.hasOwn(event, only.name);
    if (byName && (only.kind !== "object" || Object.keys(event).length === 1)) {
      values = [event[only.name]];
    } else if (Array.isArray(event) && event.length === 1 && only.kind !== "array") {
      values = [event[0]];
    } else if (isObject && only.kind !== "object") {
      // An object without the member is not the value of a string, number or list.
      values = [undefined];
    } else {
      values = [event];
    }
  } else if (isObject) {
    values = parameters.map((parameter) => (Object.hasOwn(event, parameter.name) ? event[parameter.name] : undefined));
  } else if (Array.isArray(event)) {
    if (event.length > parameters.length) {
      return `expected at most ${parameters.length} arguments, got ${event.length}`;
    }
    values = parameters.map((_, index) => event[index]);
  } else {
    return `expected an object or an array of the arguments (${parameters.map((p) => p.name).join(", ")})`;
  }
  const missing = parameters.filter((parameter, index) => values[index] === undefined && !parameter.optional);
  if (missing.length > 0) return `missing argument ${missing.map((p) => p.name).join(", ")}`;
  return values.map((value) => (value === undefined ? null : JSON.stringify(value)));
}

/** A JavaScript error for an exception the dispatcher reported. */
function dotnetError({ type, message, stack }) {
  const error = new Error(message);
  error.name = type;
  error.stack = `${type}: ${message}${stack ? `\n${stack}` : ""}`;
  return error;
}

globalThis.__functionsHost.startDotnet = startDotnet;
