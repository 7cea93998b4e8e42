// The comparison for functions-host's C# functions (`functions-host bench csharp --vs node`):
// Node boots the same .NET WebAssembly runtime with the package's own loader (dotnet.create(),
// its files read from disk) and serves one C# method over HTTP, called through the dispatcher
// assembly functions-host deploys with every C# function.
//
// Environment: DOTNET_DIR (the runtime's files), PORT, ASSEMBLIES (the function's .dll files,
// comma-separated, the dispatcher's among them), ENTRY ("Assembly|Class.Method").
import http from "node:http";
import { readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { pathToFileURL } from "node:url";

const { DOTNET_DIR, PORT, ASSEMBLIES, ENTRY } = process.env;
const DISPATCHER = "FunctionsHost.Dispatcher";
// The package's application assemblies, which functions-host leaves out too.
const APPLICATION = /^(Microsoft\.AspNetCore\.|Microsoft\.Extensions\.|Microsoft\.JSInterop|Piral\.)/;

const { dotnet } = await import(pathToFileURL(join(DOTNET_DIR, "dotnet.js")).href);
const api = await dotnet
  .withModuleConfig({
    onConfigLoaded(config) {
      const kept = config.resources.assembly.filter((asset) => !APPLICATION.test(asset.virtualPath ?? asset.name));
      for (const path of ASSEMBLIES.split(",")) {
        const name = basename(path);
        kept.push({ name, virtualPath: name, buffer: new Uint8Array(readFileSync(path)).buffer });
      }
      config.resources.assembly = kept;
      config.mainAssemblyName = DISPATCHER;
    },
  })
  .create();

const runtime = api.Module;
const native = (text) => {
  const bytes = Buffer.from(`${text}\0`);
  const at = runtime._malloc(bytes.length);
  runtime.HEAPU8.set(bytes, at);
  return at;
};
const dispatcherClass = runtime._mono_wasm_assembly_find_class(
  runtime._mono_wasm_assembly_load(native(DISPATCHER)),
  native("FunctionsHost"),
  native("Dispatcher"),
);
const invoke = runtime._mono_wasm_assembly_find_method(dispatcherClass, native("Invoke"), 1);
const words = runtime._malloc(28);

/** One operation of the dispatcher (see ext/dotnet/Dispatcher.cs): its JSON answer. */
function dispatch(operation, input) {
  const bytes = Buffer.from(input);
  const at = runtime._malloc(bytes.length + 1);
  runtime.HEAPU8.set(bytes, at);
  runtime.HEAP32.set([operation, at, bytes.length, 0, 0, 0, 0], words >>> 2);
  runtime._mono_wasm_invoke_jsexport(invoke, words);
  const [answerAt, length] = runtime.HEAP32.subarray((words >>> 2) + 5, (words >>> 2) + 7);
  const answer = Buffer.from(runtime.HEAPU8.subarray(answerAt, answerAt + length)).toString();
  runtime._free(answerAt);
  runtime._free(at);
  return JSON.parse(answer);
}

const bound = dispatch(1, ENTRY);
if (bound.error) throw new Error(bound.error.message);

http
  .createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      // The body is the method's one argument.
      const answer = dispatch(2, JSON.stringify([Buffer.concat(chunks).toString() || "null"]));
      response.writeHead(answer.error ? 500 : 200, { "content-type": "application/json" });
      response.end(JSON.stringify(answer.error ?? answer.ok));
    });
  })
  .listen(Number(PORT), "127.0.0.1");
