// functions-host: the global scope of every function isolate, and the invocation dispatcher.
// Runs once, while the base snapshot is built; nothing here runs per request except `dispatch`.

import { core, internals, primordials } from "ext:core/mod.js";
import {
  op_console_write,
  op_host_user_agent,
  op_invocation_request,
  op_invocation_request_body,
  op_invocation_body_end,
  op_invocation_body_write,
  op_invocation_collect_garbage,
  op_invocation_respond,
  op_fetch_denied_message,
  op_memory_reserve_shared,
  op_off_thread_done,
  op_off_thread_started,
} from "ext:core/ops";

const {
  ArrayBufferIsView,
  ArrayBufferPrototypeGetByteLength,
  ArrayPrototype,
  ArrayPrototypeIncludes,
  ArrayPrototypePush,
  DataViewPrototypeGetBuffer,
  DataViewPrototypeGetByteLength,
  DataViewPrototypeGetByteOffset,
  ErrorPrototype,
  FunctionPrototypeToString,
  JSONParse,
  JSONStringify,
  ObjectDefineProperty,
  ObjectFromEntries,
  MathMax,
  MathMin,
  MathTrunc,
  ObjectCreate,
  ObjectGetOwnPropertyDescriptor,
  ObjectGetPrototypeOf,
  ObjectHasOwn,
  ObjectPreventExtensions,
  ObjectPrototype,
  ObjectPrototypeIsPrototypeOf,
  ObjectSetPrototypeOf,
  StringPrototypeToLowerCase,
  Promise,
  PromisePrototype,
  PromisePrototypeThen,
  RangeError,
  ReflectConstruct,
  ReflectOwnKeys,
  ReflectApply,
  String,
  StringPrototypeStartsWith,
  StringPrototypeToUpperCase,
  SafePromiseAll,
  SafePromiseAllSettled,
  SafePromiseRace,
  SafeSet,
  SetPrototypeHas,
  StringPrototypeMatch,
  Symbol,
  SymbolSpecies,
  TypeError,
  TypeErrorPrototype,
  TypedArrayPrototypeGetBuffer,
  TypedArrayPrototypeGetByteLength,
  TypedArrayPrototypeGetByteOffset,
  TypedArrayPrototypeGetLength,
  TypedArrayPrototypeGetSymbolToStringTag,
  TypedArrayPrototypeSet,
  Uint8Array,
  Uint8ArrayPrototype,
} = primordials;

import * as rpc from "ext:rpc/rpc.js";
const load = core.loadExtScript;
const webidl = load("ext:deno_webidl/00_webidl.js");
// Objects of the host that scripts read missing keys from, or add keys to, as they load (on
// first use, while user code runs): with no prototype, no accessor user code puts on
// `Object.prototype` ever sees them.
ObjectSetPrototypeOf(internals, null);
ObjectSetPrototypeOf(webidl.converters, null);
// deno_fetch reads its OpenTelemetry hooks from `internals` (and loads deno_telemetry when they
// are missing): a function has no telemetry, so tracing stays off.
internals.__telemetry = {
  __proto__: null,
  TRACING_ENABLED: false,
  PROPAGATORS: [],
  builtinTracer: () => null,
  ContextManager: { __proto__: null, active() {} },
  DID_NOT_ENTER: undefined,
  enterSpan: () => undefined,
  exitSpan: () => {},
};
internals.__telemetryUtil = {
  __proto__: null,
  updateSpanFromClientResponse: () => {},
  updateSpanFromError: () => {},
  updateSpanFromRequest: () => {},
};
const url = load("ext:deno_web/00_url.js");
const consoleScript = load("ext:deno_web/01_console.js");
const domException = load("ext:deno_web/01_dom_exception.js");
const event = load("ext:deno_web/02_event.js");
const timers = load("ext:deno_web/02_timers.js");
const abortSignal = load("ext:deno_web/03_abort_signal.js");
const base64 = load("ext:deno_web/05_base64.js");
const encoding = load("ext:deno_web/08_text_encoding.js");
const headers = load("ext:deno_fetch/20_headers.js");
const request = load("ext:deno_fetch/23_request.js");
const response = load("ext:deno_fetch/23_response.js");
const { Request, fromInnerRequest, newInnerRequest } = request;
const { extractBody } = load("ext:deno_fetch/22_body.js");
/**
 * Whether an `InnerBody`'s `streamOrStatic` is the static kind (`{ body, consumed }`, a plain
 * object deno_fetch makes) rather than a `ReadableStream`: telling them apart this way needs no
 * streams.
 */
const isStaticBody = (streamOrStatic) => ObjectGetPrototypeOf(streamOrStatic) === ObjectPrototype;
const { Response, ResponsePrototype, toInnerResponse } = response;
// Loaded on first use, in the isolate that uses them: most functions never stream, fetch, sign,
// make blobs or forms, time themselves, match URL patterns, compress, post messages or set a
// location, and a smaller snapshot starts faster (every isolate deserializes all of it).
let fetchLoaded = null;
/**
 * `fetch`: deno_fetch's, loaded on first use. A request to a host the function was not granted
 * (deno_fetch's `op_fetch` checks each one, redirects included) rejects with a TypeError naming
 * the host and the hosts it may reach, as a network error would.
 */
const fetchScript = () => {
  if (fetchLoaded !== null) return fetchLoaded;
  const denoFetch = load("ext:deno_fetch/26_fetch.js").fetch;
  const PRIVATE_ADDRESS_REFUSED = /\S+ resolves to \S+ an address of this machine or a private network, .*? in allow_net/;
  async function fetch(input, init = undefined) {
    try {
      return await denoFetch(input, init);
    } catch (err) {
      if (ObjectPrototypeIsPrototypeOf(core.NotCapablePrototype, err)) {
        const host = StringPrototypeMatch(err.message, /^Requires net access to "([^"]*)"/)?.[1];
        if (host !== undefined) throw new TypeError(op_fetch_denied_message(host));
      }
      // A granted name that resolved only to private addresses (ext/fetch/addresses.rs).
      if (
        ObjectPrototypeIsPrototypeOf(TypeErrorPrototype, err) &&
        ObjectPrototypeIsPrototypeOf(ErrorPrototype, err.cause)
      ) {
        const refusal = StringPrototypeMatch(err.cause.message, PRIVATE_ADDRESS_REFUSED)?.[0];
        if (refusal !== undefined) throw new TypeError(`fetch is not allowed: ${refusal}`);
      }
      throw err;
    }
  }
  fetchLoaded = { fetch };
  return fetchLoaded;
};
const streamsScript = () => load("ext:deno_web/06_streams.js");
const fileScript = () => load("ext:deno_web/09_file.js");
const formDataScript = () => load("ext:deno_fetch/21_formdata.js");
let performanceScriptLoaded = null;
/** The performance timeline: `performance.timeOrigin` is when the isolate was created. */
const performanceScript = () => {
  if (performanceScriptLoaded === null) {
    performanceScriptLoaded = load("ext:deno_web/15_performance.js");
    performanceScriptLoaded.setTimeOrigin();
  }
  return performanceScriptLoaded;
};
let cryptoScriptLoaded = null;
/** `CryptoKey.prototype.algorithm`'s getter, as Web Crypto defines it (null until loaded). */
let keyAlgorithm = null;
/** Web Crypto, its operations limited and charged (see `chargeSubtleCrypto`). */
const cryptoScript = () => {
  if (cryptoScriptLoaded === null) {
    cryptoScriptLoaded = load("ext:deno_crypto/00_crypto.js");
    chargeSubtleCrypto(cryptoScriptLoaded.SubtleCrypto.prototype);
    // Node's KeyObject bridges, which Web Crypto does not have (the first hands out the
    // material of a key made not extractable, the second imports past the wrappers here).
    const { CryptoKey } = cryptoScriptLoaded;
    keyAlgorithm = ObjectGetOwnPropertyDescriptor(CryptoKey.prototype, "algorithm").get;
    delete CryptoKey.exportNodeMaterial;
    delete CryptoKey.importSync;
    // It makes a key from data that names its own algorithm (an RSA key of any size could
    // claim to be small); no key here is ever cloned through it.
    delete CryptoKey.fromCloneData;
    // It would make every key carry its material under a symbol of the caller's choosing, for
    // every isolate on the thread. Here it has nothing to register (it answers false).
    ObjectDefineProperty(cryptoScriptLoaded.Crypto, "registerSymbols", {
      __proto__: null,
      value: () => false,
      configurable: true,
    });
  }
  return cryptoScriptLoaded;
};

// Web Crypto runs these operations on a thread pool, where the watchdog does not see them: each
// is measured from its start to its end and charged to the invocation's CPU budget
// (`OffThreadTime` in ext/runtime/mod.rs), one runs at a time per isolate, and, as a started
// operation cannot be stopped, the costliest parameters are capped.
const SUBTLE_OFF_THREAD = [
  "digest", "encrypt", "decrypt", "sign", "verify", "deriveBits", "deriveKey", "exportKey",
  "wrapKey", "generateKey", "encapsulateBits", "decapsulateBits",
];
/** Operations that run on the isolate's thread but take keys (which are limited) all the same. */
const SUBTLE_ON_THREAD = ["unwrapKey", "getPublicKey", "encapsulateKey", "decapsulateKey"];
/** As Cloudflare Workers: PBKDF2 with more iterations is refused. */
const PBKDF2_MAX_ITERATIONS = 100_000;
/** PBKDF2's work grows with the output too (one round of iterations per hash-sized block). */
const PBKDF2_MAX_BITS = 2048;
const RSA_MAX_MODULUS_BITS = 4096;
/** Argon2's memory (in KiB) and passes: 64 MiB (outside the memory limit while it runs) and 10. */
const ARGON2_MAX_MEMORY_KIB = 64 * 1024;
const ARGON2_MAX_PASSES = 10;
/** Bits any operation produces on request (derived bits, an extendable digest, a KMAC): 1 MiB. */
const MAX_OUTPUT_BITS = 8 * 1024 * 1024;
/** Every member Web Crypto reads from an algorithm dictionary. */
const ALGORITHM_MEMBERS = [
  "name", "hash", "salt", "iterations", "info", "public", "length", "modulusLength",
  "publicExponent", "namedCurve", "iv", "counter", "additionalData", "tagLength", "label",
  "saltLength", "context", "memory", "passes", "parallelism", "nonce", "secretValue",
  "associatedData", "outputLength", "customization", "functionName", "domainSeparation",
];

const NUMERIC_MEMBERS = [
  "iterations", "length", "modulusLength", "memory", "passes", "parallelism", "outputLength",
];

/**
 * `value` as Web Crypto reads an `unsigned long`: converted to a number once, then wrapped
 * modulo 2 ** 32 (so -1 is 4294967295, as the operation would take it, and the limits see that).
 */
function unsignedLong(value) {
  return (+value) >>> 0;
}

/**
 * `algorithm` with each member read once into a copy whose name is a string and whose numbers
 * are numbers, so that the limits checked here are the parameters Web Crypto gets (a getter
 * cannot answer one thing to the check and another to the operation).
 */
function algorithmCopy(algorithm) {
  if (typeof algorithm !== "object" || algorithm === null) return algorithm;
  const copy = { __proto__: null };
  for (let i = 0; i < ALGORITHM_MEMBERS.length; i++) {
    const member = ALGORITHM_MEMBERS[i];
    const value = algorithm[member];
    if (value !== undefined) copy[member] = value;
  }
  for (let i = 0; i < ALGORITHM_MEMBERS.length; i++) {
    const member = ALGORITHM_MEMBERS[i];
    if (copy[member] !== undefined) copy[member] = ownBytes(copy[member]);
  }
  if (copy.name !== undefined) copy.name = String(copy.name);
  for (let i = 0; i < NUMERIC_MEMBERS.length; i++) {
    const member = NUMERIC_MEMBERS[i];
    if (copy[member] !== undefined && typeof copy[member] !== "bigint") {
      copy[member] = unsignedLong(copy[member]);
    }
  }
  return copy;
}

/**
 * A copy of the bytes of `value` if it is a buffer or a view of one (otherwise `value`): an
 * operation that waits for its turn still works on the bytes given when it was called. The copy
 * is made without `slice`, which would ask the buffer's `constructor` for it.
 */
function ownBytes(value) {
  let bytes;
  const buffer = isArrayBuffer(value);
  if (buffer) {
    bytes = new Uint8Array(value);
  } else if (!ArrayBufferIsView(value)) {
    return value;
  } else if (TypedArrayPrototypeGetSymbolToStringTag(value) !== undefined) {
    bytes = new Uint8Array(
      TypedArrayPrototypeGetBuffer(value),
      TypedArrayPrototypeGetByteOffset(value),
      TypedArrayPrototypeGetByteLength(value),
    );
  } else {
    bytes = new Uint8Array(
      DataViewPrototypeGetBuffer(value),
      DataViewPrototypeGetByteOffset(value),
      DataViewPrototypeGetByteLength(value),
    );
  }
  const copy = new Uint8Array(TypedArrayPrototypeGetLength(bytes));
  TypedArrayPrototypeSet(copy, bytes);
  return buffer ? TypedArrayPrototypeGetBuffer(copy) : copy;
}

/** Whether `value` is an `ArrayBuffer` (whatever its prototype says). */
function isArrayBuffer(value) {
  try {
    ArrayBufferPrototypeGetByteLength(value);
    return true;
  } catch {
    return false;
  }
}

/** The name of an algorithm (a string, or a copy made by `algorithmCopy`), upper case. */
function algorithmName(algorithm) {
  const name = typeof algorithm === "string" ? algorithm : algorithm?.name;
  return typeof name === "string" ? StringPrototypeToUpperCase(name) : "";
}

/** A member of a copy made by `algorithmCopy` (none of a name given as a string). */
function member(algorithm, name) {
  return typeof algorithm === "object" && algorithm !== null ? algorithm[name] : undefined;
}

function notSupported(message) {
  return new domException.DOMException(message, "NotSupportedError");
}

/** Refuses an RSA modulus past the cap: every operation with such a key is too long to allow. */
function limitRsaModulus(modulus) {
  if (modulus > RSA_MAX_MODULUS_BITS) {
    throw notSupported(
      `RSA keys of more than ${RSA_MAX_MODULUS_BITS} bits are not supported (modulusLength ${modulus})`,
    );
  }
}

/** Checks `value` if it is a key (an imported one may be of any size). */
function limitKey(value) {
  if (typeof value !== "object" || value === null) return;
  let algorithm;
  try {
    algorithm = ReflectApply(keyAlgorithm, value, []);
  } catch {
    return; // Not a key.
  }
  if (StringPrototypeStartsWith(algorithmName(algorithm), "RSA")) {
    limitRsaModulus(algorithm.modulusLength);
  }
}

/**
 * Copies the arguments of operation `name` (in `args`, in place: algorithms, and the bytes of
 * buffers) and checks them.
 */
function limitSubtleWork(name, args) {
  for (let i = 0; i < args.length; i++) {
    limitKey(args[i]);
    args[i] = ownBytes(args[i]);
  }
  args[0] = algorithmCopy(args[0]);
  const output = member(args[0], "outputLength");
  if (output > MAX_OUTPUT_BITS) {
    throw notSupported(`an output of more than ${MAX_OUTPUT_BITS} bits is not supported (outputLength ${output})`);
  }
  if (StringPrototypeStartsWith(algorithmName(args[0]), "ARGON2")) {
    const memory = member(args[0], "memory");
    const passes = member(args[0], "passes");
    if (memory > ARGON2_MAX_MEMORY_KIB || passes > ARGON2_MAX_PASSES) {
      throw notSupported(
        `Argon2 with more than ${ARGON2_MAX_MEMORY_KIB} KiB of memory or ${ARGON2_MAX_PASSES} passes is not supported (memory ${memory}, passes ${passes})`,
      );
    }
  }
  let bits;
  if (name === "deriveBits") {
    if (args[2] !== undefined && args[2] !== null) args[2] = unsignedLong(args[2]);
    bits = args[2];
  } else if (name === "deriveKey") {
    args[2] = algorithmCopy(args[2]);
    bits = member(args[2], "length");
  } else if (name === "generateKey") {
    if (StringPrototypeStartsWith(algorithmName(args[0]), "RSA")) {
      limitRsaModulus(member(args[0], "modulusLength"));
    }
    return;
  } else {
    return;
  }
  if (bits > MAX_OUTPUT_BITS) {
    throw notSupported(`deriving more than ${MAX_OUTPUT_BITS} bits is not supported (length ${bits})`);
  }
  if (algorithmName(args[0]) !== "PBKDF2") return;
  const iterations = member(args[0], "iterations");
  if (iterations > PBKDF2_MAX_ITERATIONS) {
    throw notSupported(
      `PBKDF2 with more than ${PBKDF2_MAX_ITERATIONS} iterations is not supported (iterations ${iterations})`,
    );
  }
  if (bits > PBKDF2_MAX_BITS) {
    throw notSupported(`PBKDF2 derives at most ${PBKDF2_MAX_BITS} bits (length ${bits})`);
  }
}

/**
 * `promise`, made to be awaited without consulting `Promise.prototype` (which user code may
 * change): with `constructor` its own, `await` takes it as it is.
 */
function sealed(promise) {
  ObjectDefineProperty(promise, "constructor", { __proto__: null, value: Promise });
  return promise;
}

/** The end of the isolate's last off-thread operation (null: none yet). */
let subtleTail = null;

/**
 * Replaces the operations of `SubtleCrypto.prototype` that do costly work with limited ones:
 * those that run on the thread pool are charged too (the rest run on the isolate's thread, whose
 * CPU time the watchdog counts already).
 */
function chargeSubtleCrypto(prototype) {
  const operations = [...SUBTLE_OFF_THREAD, ...SUBTLE_ON_THREAD];
  for (let i = 0; i < operations.length; i++) {
    const name = operations[i];
    const operation = prototype[name];
    if (typeof operation !== "function") continue;
    const offThread = i < SUBTLE_OFF_THREAD.length;
    const limited = {
      async [name](...args) {
        limitSubtleWork(name, args);
        if (!offThread) return await sealed(ReflectApply(operation, this, args));
        const before = subtleTail;
        let done;
        subtleTail = sealed(new Promise((resolve) => {
          done = resolve;
        }));
        if (before !== null) await before;
        const started = op_off_thread_started();
        try {
          return await sealed(ReflectApply(operation, this, args));
        } finally {
          op_off_thread_done(started);
          done();
        }
      },
    }[name];
    ObjectDefineProperty(limited, "length", {
      __proto__: null,
      value: operation.length,
      configurable: true,
    });
    ObjectDefineProperty(prototype, name, {
      __proto__: null,
      value: limited,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
}
const urlPatternScript = () => load("ext:deno_web/01_urlpattern.js");
const messagePortScript = () => load("ext:deno_web/13_message_port.js");
const compressionScript = () => load("ext:deno_web/14_compression.js");
const locationScript = () => load("ext:deno_web/12_location.js");

// Errors the Rust side of the web APIs (Web Crypto, fetch, ...) raises as DOMExceptions, by name.
for (
  const name of [
    "AbortError", "DataError", "EncodingError", "IndexSizeError", "InvalidAccessError",
    "InvalidCharacterError", "InvalidStateError", "NetworkError", "NotFoundError",
    "NotSupportedError", "OperationError", "QuotaExceededError", "SyntaxError", "TimeoutError",
    "TypeMismatchError",
  ]
) {
  core.registerErrorBuilder(
    `DOMException${name}`,
    (message) => new domException.DOMException(message, name),
  );
}

// Logs are plain text: never ANSI colours.
consoleScript.setNoColorFns(() => true, () => true);
const console = new consoleScript.Console(op_console_write);

/**
 * `scheduler`, as in Workers: `await scheduler.wait(ms)` resolves after `ms` milliseconds (an
 * awaitable `setTimeout`); `{ signal }` rejects it with the signal's reason when aborted.
 */
class Scheduler {
  wait(delay, options = undefined) {
    const ms = webidl.converters["unsigned long long"](delay ?? 0, "Failed to execute 'wait' on 'Scheduler'", "Argument 1");
    const signal = options?.signal;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal.reason);
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}
const scheduler = new Scheduler();

/** `navigator`: who is running the function, as in Workers and Deno. */
class Navigator {
  get userAgent() {
    return USER_AGENT;
  }
  get hardwareConcurrency() {
    return 1;
  }
  get language() {
    return "en-US";
  }
  get languages() {
    return ["en-US"];
  }
}
const USER_AGENT = op_host_user_agent();
const navigator = new Navigator();

const nonEnumerable = core.propNonEnumerable;
const writable = core.propWritable;

core.defineGlobalProperties(globalThis, {
  // Fetch
  fetch: core.propWritableLazyLoaded((m) => m.fetch, fetchScript),
  Headers: nonEnumerable(headers.Headers),
  Request: nonEnumerable(Request),
  Response: nonEnumerable(Response),
  FormData: core.propNonEnumerableLazyLoaded((m) => m.FormData, formDataScript),
  // URL
  URL: nonEnumerable(url.URL),
  URLSearchParams: nonEnumerable(url.URLSearchParams),
  URLPattern: core.propNonEnumerableLazyLoaded((m) => m.URLPattern, urlPatternScript),
  // Encoding
  TextEncoder: nonEnumerable(encoding.TextEncoder),
  TextDecoder: nonEnumerable(encoding.TextDecoder),
  TextEncoderStream: nonEnumerable(encoding.TextEncoderStream),
  TextDecoderStream: nonEnumerable(encoding.TextDecoderStream),
  atob: writable(base64.atob),
  btoa: writable(base64.btoa),
  // Crypto
  crypto: core.propNonEnumerableLazyLoaded((m) => m.crypto, cryptoScript),
  Crypto: core.propNonEnumerableLazyLoaded((m) => m.Crypto, cryptoScript),
  CryptoKey: core.propNonEnumerableLazyLoaded((m) => m.CryptoKey, cryptoScript),
  SubtleCrypto: core.propNonEnumerableLazyLoaded((m) => m.SubtleCrypto, cryptoScript),
  // Console, timers, scheduling
  console: nonEnumerable(console),
  setTimeout: writable(timers.setTimeout),
  clearTimeout: writable(timers.clearTimeout),
  setInterval: writable(timers.setInterval),
  clearInterval: writable(timers.clearInterval),
  structuredClone: core.propWritableLazyLoaded((m) => m.structuredClone, messagePortScript),
  performance: core.propWritableLazyLoaded((m) => m.performance, performanceScript),
  scheduler: writable(scheduler),
  Scheduler: nonEnumerable(Scheduler),
  Performance: core.propNonEnumerableLazyLoaded((m) => m.Performance, performanceScript),
  // DOM: events, aborting, exceptions
  DOMException: nonEnumerable(domException.DOMException),
  Event: nonEnumerable(event.Event),
  EventTarget: nonEnumerable(event.EventTarget),
  CustomEvent: nonEnumerable(event.CustomEvent),
  MessageEvent: nonEnumerable(event.MessageEvent),
  MessageChannel: core.propNonEnumerableLazyLoaded((m) => m.MessageChannel, messagePortScript),
  MessagePort: core.propNonEnumerableLazyLoaded((m) => m.MessagePort, messagePortScript),
  ErrorEvent: nonEnumerable(event.ErrorEvent),
  PromiseRejectionEvent: nonEnumerable(event.PromiseRejectionEvent),
  reportError: writable(event.reportError),
  RpcTarget: nonEnumerable(rpc.RpcTarget),
  WorkerEntrypoint: nonEnumerable(rpc.WorkerEntrypoint),
  AbortController: nonEnumerable(abortSignal.AbortController),
  AbortSignal: nonEnumerable(abortSignal.AbortSignal),
  // Streams, files, compression
  ReadableStream: core.propNonEnumerableLazyLoaded((m) => m.ReadableStream, streamsScript),
  ReadableStreamDefaultReader: core.propNonEnumerableLazyLoaded((m) => m.ReadableStreamDefaultReader, streamsScript),
  ReadableStreamBYOBReader: core.propNonEnumerableLazyLoaded((m) => m.ReadableStreamBYOBReader, streamsScript),
  ReadableStreamBYOBRequest: core.propNonEnumerableLazyLoaded((m) => m.ReadableStreamBYOBRequest, streamsScript),
  ReadableByteStreamController: core.propNonEnumerableLazyLoaded((m) => m.ReadableByteStreamController, streamsScript),
  ReadableStreamDefaultController: core.propNonEnumerableLazyLoaded((m) => m.ReadableStreamDefaultController, streamsScript),
  WritableStream: core.propNonEnumerableLazyLoaded((m) => m.WritableStream, streamsScript),
  WritableStreamDefaultWriter: core.propNonEnumerableLazyLoaded((m) => m.WritableStreamDefaultWriter, streamsScript),
  WritableStreamDefaultController: core.propNonEnumerableLazyLoaded((m) => m.WritableStreamDefaultController, streamsScript),
  TransformStream: core.propNonEnumerableLazyLoaded((m) => m.TransformStream, streamsScript),
  TransformStreamDefaultController: core.propNonEnumerableLazyLoaded((m) => m.TransformStreamDefaultController, streamsScript),
  ByteLengthQueuingStrategy: core.propNonEnumerableLazyLoaded((m) => m.ByteLengthQueuingStrategy, streamsScript),
  CountQueuingStrategy: core.propNonEnumerableLazyLoaded((m) => m.CountQueuingStrategy, streamsScript),
  Blob: core.propNonEnumerableLazyLoaded((m) => m.Blob, fileScript),
  File: core.propNonEnumerableLazyLoaded((m) => m.File, fileScript),
  CompressionStream: core.propNonEnumerableLazyLoaded((m) => m.CompressionStream, compressionScript),
  DecompressionStream: core.propNonEnumerableLazyLoaded(
    (m) => m.DecompressionStream,
    compressionScript,
  ),
  Navigator: nonEnumerable(Navigator),
  navigator: core.propGetterOnly(() => navigator),
  self: { value: globalThis, writable: true, enumerable: false, configurable: true },
});
// The global scope is an EventTarget ("error" and "unhandledrejection" events; reportError
// dispatches on it), as in Workers and Deno.
ObjectSetPrototypeOf(globalThis, event.EventTarget.prototype);
globalThis[webidl.brand] = webidl.brand;
event.setEventTargetData(globalThis);
event.saveGlobalThisReference(globalThis);

// An unhandled promise rejection is dispatched as an "unhandledrejection" event on the global
// scope and, unless a listener calls preventDefault(), logged as an error; it never fails the
// invocation (as in Workers). A rejection handled later dispatches "rejectionhandled".
core.setUnhandledPromiseRejectionHandler((promise, reason) => {
  const rejection = new event.PromiseRejectionEvent("unhandledrejection", {
    cancelable: true,
    promise,
    reason,
  });
  globalThis.dispatchEvent(rejection);
  if (!rejection.defaultPrevented) console.error("Uncaught (in promise)", reason);
  return true;
});
core.setHandledPromiseRejectionHandler((promise, reason) => {
  globalThis.dispatchEvent(
    new event.PromiseRejectionEvent("rejectionhandled", { promise, reason }),
  );
});

/** The `ctx` argument of a handler, as in Workers: `waitUntil` and `passThroughOnException`. */
class ExecutionContext {
  #pending;
  constructor(pending) {
    this.#pending = pending;
  }
  waitUntil(promise) {
    ArrayPrototypePush(this.#pending, promise);
  }
  passThroughOnException() {}
}

/** The header that marks an error the host answered (functions_types::HOST_ERROR_HEADER). */
const HOST_ERROR = "x-functions-host-error";

/**
 * A function's header list without the host's error mark: a new plain array, copied by index (no
 * species lookup, nothing user code can reach).
 */
function withoutHostMark(headerList) {
  const kept = [];
  for (let i = 0; i < headerList.length; i++) {
    const entry = headerList[i];
    if (StringPrototypeToLowerCase(entry[0]) !== HOST_ERROR) ArrayPrototypePush(kept, entry);
  }
  return kept;
}

/** An error the host answers for the function, marked so (as the HTTP layer marks its own). */
function jsonError(status, code, message) {
  return new Response(JSONStringify({ error: { code, message } }), {
    status,
    headers: { "content-type": "application/json", [HOST_ERROR]: code },
  });
}

/** The event of a plain-function handler: the JSON body, or the query parameters when empty. */
function eventOf(head) {
  if (!head.has_body) {
    return ObjectFromEntries(new url.URL(head.url).searchParams);
  }
  const text = core.decode(op_invocation_request_body());
  return JSONParse(text);
}

/** Methods the `Request` constructor would keep as they are. */
const NORMALIZED_METHODS = new SafeSet(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]);

/**
 * The `Request` of a fetch handler. The HTTP layer has already parsed the URL, header names and
 * values, so a request with a common method skips the constructor's checks; its URL is
 * serialized when first read.
 */
function requestOf(head) {
  const body = head.has_body ? op_invocation_request_body() : null;
  if (!SetPrototypeHas(NORMALIZED_METHODS, head.method)) {
    const init = { method: head.method, headers: head.headers };
    if (body !== null) init.body = body;
    return new Request(head.url, init);
  }
  const href = head.url;
  const headerList = head.headers;
  const inner = newInnerRequest(
    head.method,
    () => new url.URL(href).href,
    () => headerList,
    body === null ? null : extractBody(body).body,
    false,
  );
  return fromInnerRequest(inner, "request");
}

const { setTimeout, clearTimeout } = timers;

/** How long `ctx.waitUntil` promises may keep an isolate alive after its response. */
const WAIT_UNTIL_LIMIT_MS = 30_000;
const TIMED_OUT = Symbol("timed out");

/**
 * Hands the response to the host. A body that is a `ReadableStream` (not one made from a string
 * or bytes) is streamed: the host gets the head at once, and `{ pumping }` is returned, a
 * promise that settles when the body has ended. Otherwise the whole body goes with the head.
 * The host's error mark is dropped from a function's own response, so that only errors the host
 * answers (`marked`) carry it.
 */
async function respond(res, marked = false) {
  const inner = toInnerResponse(res);
  const list = marked ? inner.headerList : withoutHostMark(inner.headerList);
  const stream = inner.body?.streamOrStatic;
  if (inner.body === null || isStaticBody(stream)) {
    let body = null;
    if (inner.body !== null && stream.consumed) {
      // Fails as reading a used body does.
      body = new Uint8Array(await res.arrayBuffer());
    } else if (inner.body !== null) {
      // A body made from a string or bytes: taken as it is.
      stream.consumed = true;
      body = typeof stream.body === "string" ? core.encode(stream.body) : stream.body;
    }
    op_invocation_respond(inner.status, list, body, false);
    return null;
  }
  op_invocation_respond(inner.status, list, null, true);
  // Wrapped: an async function returning a promise would wait for it.
  return { pumping: pump(res.body.getReader()) };
}

/** Bytes of a streamed body between two garbage collections (see op_invocation_collect_garbage). */
const COLLECT_EVERY_BYTES = 8 * 1024 * 1024;

async function pump(reader) {
  let uncollected = 0;
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      if (!ObjectPrototypeIsPrototypeOf(Uint8ArrayPrototype, value)) {
        throw new TypeError("a response body stream must produce Uint8Array chunks");
      }
      uncollected += TypedArrayPrototypeGetByteLength(value);
      if (uncollected >= COLLECT_EVERY_BYTES) {
        uncollected = 0;
        op_invocation_collect_garbage();
      }
      if (!(await op_invocation_body_write(value))) {
        // The client went away: stop the producer.
        await reader.cancel(new domException.DOMException("the client closed the connection", "AbortError"));
        break;
      }
    }
  } catch (err) {
    await op_invocation_body_end(`${err?.stack ?? err}`);
    throw err;
  }
  await op_invocation_body_end(null);
}

/** Waits for `ctx.waitUntil` promises, at most WAIT_UNTIL_LIMIT_MS; logs their failures. */
async function settleWaitUntil(pending) {
  let timer;
  const limit = new Promise((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), WAIT_UNTIL_LIMIT_MS);
  });
  const results = await SafePromiseRace([SafePromiseAllSettled(pending), limit]);
  clearTimeout(timer);
  if (results === TIMED_OUT) {
    console.warn(
      `ctx.waitUntil: promises still pending ${WAIT_UNTIL_LIMIT_MS} ms after the response were abandoned`,
    );
    return;
  }
  for (const result of results) {
    if (result.status === "rejected") console.error("Uncaught (in waitUntil)", result.reason);
  }
}

/** Whether `value` is a class (which is instantiated, never called). */
function isClass(value) {
  return StringPrototypeStartsWith(FunctionPrototypeToString(value), "class");
}

/**
 * The object whose `fetch(request, env, ctx)` handles HTTP requests: the default export, or an
 * instance of it when it is a class (WorkerEntrypoint-style); null when there is none.
 */
function fetchHandler(handler, env, ctx) {
  const target = typeof handler === "function" && isClass(handler) ? new handler(ctx, env) : handler;
  if (target !== null && typeof target === "object" && typeof target.fetch === "function") return target;
  return null;
}

/**
 * Runs one invocation of the module whose namespace is `ns`: reads the request from the host,
 * calls the default export (a fetch handler or a plain function) and hands the response back.
 * Rejects when the handler throws; the host turns that into a 500 with the stack. Resolves to
 * `null` when the invocation is over, or to `{ tail }`, a promise of the work left after the
 * response (see below).
 */
async function dispatch(ns) {
  const head = op_invocation_request();
  const handler = ns.default;
  const pending = [];
  const ctx = new ExecutionContext(pending);
  const env = head.env;
  // Called through a binding: the session is served until the caller is done with it.
  const serving = rpc.begin(env);
  let res;
  if (serving !== null) {
    // A Python function (whose namespace is boot.js's, not a module's) offers its module's
    // public functions.
    const main = core.isModuleNamespaceObject(ns) ? handler : ns.rpc;
    await rpc.serve(serving, main, env, ctx);
    // The caller has had its answers: nothing reads this response (no Response object made).
    op_invocation_respond(204, [], null, false);
    return tailOf(pending.length > 0 ? [settleWaitUntil(pending)] : []);
  } else if (typeof handler === "function" && !isClass(handler)) {
    let event;
    try {
      event = eventOf(head);
    } catch (err) {
      await respond(jsonError(400, "bad_request", `request body is not valid JSON: ${err.message}`), true);
      return;
    }
    const result = await handler(event, env, ctx);
    if (ObjectPrototypeIsPrototypeOf(ResponsePrototype, result)) {
      res = result;
    } else if (result === undefined) {
      res = new Response(null, { status: 204 });
    } else {
      res = Response.json(result);
    }
  } else {
    const target = fetchHandler(handler, env, ctx);
    if (target === null) {
      throw new TypeError(
        "the module's default export must be a function or an object with a fetch(request, env, ctx) method",
      );
    }
    res = await target.fetch(requestOf(head), env, ctx);
    if (!ObjectPrototypeIsPrototypeOf(ResponsePrototype, res)) {
      throw new TypeError(`fetch() must return a Response, but it returned ${typeof res === "object" ? (res === null ? "null" : "an object") : typeof res}`);
    }
  }
  // What still runs after the response: the body's stream and `ctx.waitUntil` promises. The
  // host answers the client first, then keeps the isolate until `tail` settles.
  // `tail` never rejects (an unhandled rejection would fail the invocation at once): it
  // resolves to the failure's stack, or to null.
  const streaming = await respond(res);
  const tail = [];
  if (streaming !== null) ArrayPrototypePush(tail, streaming.pumping);
  if (pending.length > 0) ArrayPrototypePush(tail, settleWaitUntil(pending));
  return tailOf(tail);
}

/** What `dispatch` resolves to for the work in `tail` (promises), which runs after the response. */
function tailOf(tail) {
  if (tail.length === 0) return null;
  return {
    tail: PromisePrototypeThen(SafePromiseAll(tail), () => null, (err) => `${err?.stack ?? err}`),
  };
}

/**
 * Gives the function a base URL, as Deno's `--location` does: relative URLs in `fetch`, `Request`
 * and `Response.redirect` resolve against it, and `location` is a WorkerLocation of it. Called
 * (when the embedder sets one) before the function's modules evaluate; without it, `location` is
 * undefined, as in Workers and Deno Deploy.
 */
function setLocation(href) {
  const location = locationScript();
  location.setLocationHref(href);
  ObjectDefineProperty(globalThis, "location", location.workerLocationDescriptor);
  ObjectDefineProperty(
    globalThis,
    "WorkerLocation",
    location.workerLocationConstructorDescriptor,
  );
}

/**
 * `SharedArrayBuffer`s, each charged to the function's memory at its largest size as it is made
 * (no V8 counter sees shared memory, and a growable one grows without asking). There is no
 * global `SharedArrayBuffer`, but shared WebAssembly memory's buffer leads to its constructor:
 * `SharedArrayBuffer.prototype.constructor` (which subclasses go through too) is made this one,
 * and the builtin is reachable from nowhere else. The builtin `slice` makes its copy with the
 * builtin constructor when `constructor` is undefined or its species undefined or null (as
 * after `buf.constructor = undefined`), so it is replaced by one that charges the copy (and, as
 * it never consults `constructor` or its species, always makes a plain `SharedArrayBuffer`).
 */
function chargeSharedArrayBuffers(WebAssembly) {
  const shared = new WebAssembly.Memory({ __proto__: null, initial: 0, maximum: 0, shared: true });
  const Builtin = ObjectGetPrototypeOf(shared.buffer).constructor;
  function Charged(length, options = undefined) {
    if (new.target === undefined) {
      throw new TypeError("Constructor SharedArrayBuffer requires 'new'");
    }
    // Each argument read and converted once: what is charged is what is made.
    const byteLength = length === undefined ? 0 : MathTrunc(+length) || 0;
    const maxOption = options === undefined || options === null ? undefined : options.maxByteLength;
    const maxByteLength = maxOption === undefined ? undefined : MathTrunc(+maxOption) || 0;
    if (!op_memory_reserve_shared(MathMax(byteLength, maxByteLength ?? 0))) {
      throw new RangeError("the function's memory limit is reached");
    }
    const growable = maxByteLength === undefined ? undefined : { __proto__: null, maxByteLength };
    return ReflectConstruct(
      Builtin,
      [byteLength, growable],
      new.target === Charged ? Builtin : new.target,
    );
  }
  ObjectDefineProperty(Charged, "name", { __proto__: null, value: "SharedArrayBuffer" });
  ObjectDefineProperty(Charged, "length", { __proto__: null, value: 1 });
  ObjectDefineProperty(Charged, "prototype", { __proto__: null, value: Builtin.prototype, writable: false });
  ObjectDefineProperty(Charged, SymbolSpecies, {
    __proto__: null,
    get() {
      return this;
    },
    configurable: true,
  });
  ObjectDefineProperty(Builtin.prototype, "constructor", {
    __proto__: null,
    value: Charged,
    writable: true,
    configurable: true,
  });
  const byteLengthOf = ObjectGetOwnPropertyDescriptor(Builtin.prototype, "byteLength").get;
  const { slice } = {
    slice(start, end) {
      // As the builtin: the length first (which also refuses anything but a shared buffer),
      // then each index made relative to it. A shared buffer never shrinks.
      const length = ReflectApply(byteLengthOf, this, []);
      const first = relativeIndex(start, length, 0);
      const final = relativeIndex(end, length, length);
      const size = MathMax(final - first, 0);
      if (!op_memory_reserve_shared(size)) {
        throw new RangeError("the function's memory limit is reached");
      }
      const copy = ReflectConstruct(Builtin, [size]);
      TypedArrayPrototypeSet(new Uint8Array(copy), new Uint8Array(this, first, size));
      return copy;
    },
  };
  ObjectDefineProperty(Builtin.prototype, "slice", {
    __proto__: null,
    value: slice,
    writable: true,
    configurable: true,
  });
  if (ObjectHasOwn(globalThis, "SharedArrayBuffer")) {
    ObjectDefineProperty(globalThis, "SharedArrayBuffer", {
      __proto__: null,
      value: Charged,
      writable: true,
      configurable: true,
    });
  }
}

/**
 * An index argument of `slice` as the builtins read it: counted from the end when negative,
 * clamped to `[0, length]`, `fallback` when undefined.
 */
function relativeIndex(index, length, fallback) {
  if (index === undefined) return fallback;
  const relative = MathTrunc(+index) || 0;
  return relative < 0 ? MathMax(length + relative, 0) : MathMin(relative, length);
}

/**
 * Prepares an isolate made from the snapshot, before any of the function's code runs. V8 gives
 * each context its own `WebAssembly` (there is none while the snapshot is built), the only way
 * to a `SharedArrayBuffer`: on its first use, shared buffers are made to be charged.
 */
function prepare() {
  const wasm = globalThis.WebAssembly;
  if (wasm === undefined) return;
  let charged = false;
  const settle = (value) => {
    if (!charged) {
      charged = true;
      chargeSharedArrayBuffers(wasm);
    }
    ObjectDefineProperty(globalThis, "WebAssembly", {
      __proto__: null,
      value,
      writable: true,
      configurable: true,
    });
    return value;
  };
  ObjectDefineProperty(globalThis, "WebAssembly", {
    __proto__: null,
    get: () => settle(wasm),
    set: settle,
    configurable: true,
  });
}

/**
 * Makes `prototype` take no new property and no accessor in place of any of its own but those
 * in `open` (each stays writable unless named in `readOnly`). Host scripts read missing keys
 * from, and add keys to, many of their objects, which inherit from these prototypes; an
 * accessor user code put on one would be handed those objects (Deno's internals, Web Crypto's
 * key material, streams' state). Run last, while the snapshot is built.
 */
function lockPrototype(prototype, { readOnly = [], open = [] } = { __proto__: null }) {
  const keys = ReflectOwnKeys(prototype);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    const descriptor = ObjectGetOwnPropertyDescriptor(prototype, key);
    if (!descriptor.configurable || ArrayPrototypeIncludes(open, key)) continue;
    const locked = { __proto__: null, configurable: false };
    if (ArrayPrototypeIncludes(readOnly, key) && ObjectHasOwn(descriptor, "value")) {
      locked.writable = false;
    }
    ObjectDefineProperty(prototype, key, locked);
  }
  ObjectPreventExtensions(prototype);
  // Changing its properties turned V8's representation of it into a slow dictionary; being
  // used as a prototype makes it fast again.
  ObjectCreate(prototype);
}
lockPrototype(ObjectPrototype);
// `Array.prototype.constructor`, `Array[Symbol.species]` and the array iterator's `next` stay
// as they are: touching them turns off V8's fast paths for every array (map, spread, for-of).
lockPrototype(ArrayPrototype, { __proto__: null, open: ["constructor"] });
// What host code calls on its own promises (their species, `then`) cannot be replaced either.
lockPrototype(PromisePrototype, { __proto__: null, readOnly: ["constructor", "then"] });
ObjectDefineProperty(Promise, SymbolSpecies, { __proto__: null, configurable: false });

ObjectDefineProperty(globalThis, "__functionsHost", {
  value: { dispatch, prepare, setLocation, rpcWarmUp: rpc.warmUp },
  writable: true,
  enumerable: false,
  configurable: true,
});
