// functions-host: the capnweb wire protocol, for sessions with clients outside (the npm `capnweb`
// package at `/rpc/{name}`; see mod.rs). A codec of rpc.js's Session: it translates capnweb's
// JSON messages and expressions into the session's own messages and values, and back.
//
// capnweb (cloudflare/capnweb, protocol 0.12) in brief: every message is a JSON array named by
// its first element. `["push", expr]` evaluates a call (`["pipeline", id, path, args]`) whose
// result gets the next positive id; `["pull", id]` asks for it, answered by `["resolve", id,
// value]` or `["reject", id, error]`; `["release", id, count]` drops an entry; `["abort",
// error]` ends the session. In values any array is special: `[[...]]` is an array, and
// `["undefined"]`, `["inf"]`, `["date", ms]`, `["bigint", "123"]`, `["bytes", base64]`,
// `["error", name, message]`, `["export", -n]` (a stub the sender hands over), `["import", id]`
// and `["pipeline", id, path]` (the receiver's own objects and results) are typed values.
// `["remap", ...]` is the client's `.map()`, run here on the value it names.
//
// Not supported: streams (`stream` and `pipe` messages; ReadableStream, WritableStream), and
// the Request, Response, Headers, URL and Blob values, which end the session with a clear error.

import { core, primordials } from "ext:core/mod.js";
import { op_base64_decode, op_base64_encode_from_buffer, op_rpc_send_text } from "ext:core/ops";

const {
  ArrayBufferPrototypeGetByteLength,
  ArrayBufferPrototypeSlice,
  ArrayIsArray,
  ArrayPrototypeIncludes,
  ArrayPrototypePush,
  BigInt,
  BigIntPrototypeToString,
  BigInt64Array,
  BigUint64Array,
  DataView,
  DataViewPrototypeGetBuffer,
  DataViewPrototypeGetByteLength,
  DataViewPrototypeGetByteOffset,
  Date,
  DatePrototypeGetTime,
  Error,
  ErrorPrototype,
  Float32Array,
  Float64Array,
  Int16Array,
  Int32Array,
  Int8Array,
  JSONParse,
  JSONStringify,
  NumberIsFinite,
  NumberIsInteger,
  NumberIsNaN,
  ObjectGetPrototypeOf,
  ObjectKeys,
  ObjectPrototype,
  ObjectPrototypeIsPrototypeOf,
  Promise,
  PromisePrototypeCatch,
  PromiseResolve,
  RangeError,
  ReflectHas,
  SafePromiseAll,
  SafeSet,
  StringPrototypeSlice,
  TypeError,
  TypedArrayPrototypeGetBuffer,
  TypedArrayPrototypeGetByteLength,
  TypedArrayPrototypeGetByteOffset,
  TypedArrayPrototypeGetSymbolToStringTag,
  Uint16Array,
  Uint32Array,
  Uint8Array,
  Uint8ClampedArray,
} = primordials;

/** The longest message either way, in UTF-16 code units: a payload's limit. */
const MAX_MESSAGE = 5 * 1024 * 1024;
/** How deep a value may nest. */
const MAX_DEPTH = 256;
/** The most digits a bigint may have. */
const MAX_BIGINT_DIGITS = 16384;

const BATCH_CALLS =
  "a capnweb HTTP batch client cannot be called back (its batch is over before an answer could " +
  "arrive): use a WebSocket session (newWebSocketRpcSession) to pass callbacks or RpcTargets";

const UNSUPPORTED_VALUES = {
  __proto__: null,
  url: "URL",
  headers: "Headers",
  request: "Request",
  response: "Response",
  blob: "Blob",
  writable: "WritableStream",
  readable: "ReadableStream",
};

// Typed arrays by the name capnweb's `bytes` values carry (little-endian elements, as here).
const BYTE_CONTAINERS = {
  __proto__: null,
  Int8Array: [Int8Array, 1],
  Uint8Array: [Uint8Array, 1],
  Uint8ClampedArray: [Uint8ClampedArray, 1],
  Int16Array: [Int16Array, 2],
  Uint16Array: [Uint16Array, 2],
  Int32Array: [Int32Array, 4],
  Uint32Array: [Uint32Array, 4],
  BigInt64Array: [BigInt64Array, 8],
  BigUint64Array: [BigUint64Array, 8],
  Float32Array: [Float32Array, 4],
  Float64Array: [Float64Array, 8],
};

/** Whether an object key is one capnweb's receivers ignore: on Object.prototype, or toJSON. */
function ignoredKey(key) {
  return key === "toJSON" || ReflectHas(ObjectPrototype, key);
}

function bad(message) {
  let text;
  try {
    text = JSONStringify(message);
  } catch {
    text = "(unprintable)";
  }
  if (text.length > 200) text = `${StringPrototypeSlice(text, 0, 200)}...`;
  return new TypeError(`bad RPC message: ${text}`);
}

function isId(value) {
  return typeof value === "number" && NumberIsInteger(value);
}

function isPath(value) {
  if (!ArrayIsArray(value)) return false;
  for (let i = 0; i < value.length; i++) {
    if (typeof value[i] !== "string" && typeof value[i] !== "number") return false;
  }
  return true;
}

/** Base64 of `length` bytes of `buffer` at `offset`, without padding (as capnweb writes it). */
function base64Of(buffer, offset, length) {
  const text = op_base64_encode_from_buffer(new Uint8Array(buffer), offset, length);
  let end = text.length;
  while (end > 0 && text[end - 1] === "=") end--;
  return StringPrototypeSlice(text, 0, end);
}

/** `promise`, whose failure is someone else's to report (or no one's). */
function quiet(promise) {
  PromisePrototypeCatch(promise, () => {});
  return promise;
}

/** A `bytes` value's base64 as a fresh ArrayBuffer. */
function bufferOf(text) {
  if (typeof text !== "string") throw new TypeError("a capnweb bytes value must hold base64 text");
  let bytes;
  try {
    bytes = op_base64_decode(text);
  } catch {
    throw new TypeError("a capnweb bytes value holds invalid base64");
  }
  const offset = TypedArrayPrototypeGetByteOffset(bytes);
  const length = TypedArrayPrototypeGetByteLength(bytes);
  return ArrayBufferPrototypeSlice(TypedArrayPrototypeGetBuffer(bytes), offset, offset + length);
}

/** What kind of thing `value` is, for messages. */
function kindOf(value) {
  if (core.isMap(value)) return "a Map";
  if (core.isSet(value)) return "a Set";
  if (core.isRegExp(value)) return "a RegExp";
  if (core.isWeakMap(value) || core.isWeakSet(value)) return "a WeakMap or WeakSet";
  if (core.isBoxedPrimitive(value)) return "a boxed primitive";
  if (core.isSharedArrayBuffer(value)) return "a SharedArrayBuffer";
  if (core.isProxy(value)) return "a Proxy";
  let name;
  try {
    const constructor = ObjectGetPrototypeOf(value)?.constructor;
    name = typeof constructor === "function" ? constructor.name : undefined;
  } catch {
    // A throwing getter: unnamed.
  }
  return typeof name === "string" && name !== "" ? `an instance of ${name}` : "this object";
}

/**
 * The session codec for a capnweb client: `batch` for HTTP batch (the client's messages all
 * arrive, then the session answers what was pulled and ends), WebSocket otherwise. `tools` are
 * rpc.js's private helpers.
 */
class CapnwebCodec {
  constructor(batch, tools) {
    this.batch = batch;
    this.tools = tools;
    // capnweb clients release each id once, however often it was sent: a new id every time.
    this.freshExports = true;
    // Calls to a batch client's stubs fail at once.
    this.refusesCalls = batch ? BATCH_CALLS : undefined;
    // Pulled results not answered yet, and who waits for there to be none.
    this.pulled = new SafeSet();
    this.drained = null;
  }

  // Sending.

  /** `value` as a capnweb expression; a TypeError if capnweb cannot carry it. */
  value(session, value) {
    return this.encode(session, value, 0);
  }

  encode(session, value, depth) {
    if (depth > MAX_DEPTH) {
      throw new TypeError(`a value nested deeper than ${MAX_DEPTH} levels (or a cycle) cannot be sent over capnweb`);
    }
    switch (typeof value) {
      case "undefined":
        return ["undefined"];
      case "boolean":
      case "string":
        return value;
      case "number":
        if (NumberIsFinite(value)) return value;
        if (NumberIsNaN(value)) return ["nan"];
        return value > 0 ? ["inf"] : ["-inf"];
      case "bigint":
        return ["bigint", BigIntPrototypeToString(value)];
      case "symbol":
        throw new TypeError("a Symbol cannot be sent over capnweb");
      case "function":
        return this.tools.stubInfo(value) !== undefined ? this.describeStub(session, value) : session.exportLocal(value);
      default:
        break;
    }
    if (value === null) return null;
    if (core.isPromise(value)) throw new TypeError("a Promise cannot be sent over capnweb: await it first");
    if (this.tools.isRpcTarget(value)) return session.exportLocal(value);
    if (ArrayIsArray(value)) {
      const out = [];
      for (let i = 0; i < value.length; i++) out[i] = this.encode(session, value[i], depth + 1);
      return [out];
    }
    if (core.isDate(value)) {
      const time = DatePrototypeGetTime(value);
      return ["date", NumberIsNaN(time) ? null : time];
    }
    if (core.isArrayBuffer(value)) {
      return ["bytes", base64Of(value, 0, ArrayBufferPrototypeGetByteLength(value)), "ArrayBuffer"];
    }
    if (core.isDataView(value)) {
      const buffer = DataViewPrototypeGetBuffer(value);
      if (core.isSharedArrayBuffer(buffer)) throw new TypeError("shared memory cannot be sent over capnweb");
      const text = base64Of(buffer, DataViewPrototypeGetByteOffset(value), DataViewPrototypeGetByteLength(value));
      return ["bytes", text, "DataView"];
    }
    if (core.isTypedArray(value)) {
      const buffer = TypedArrayPrototypeGetBuffer(value);
      if (core.isSharedArrayBuffer(buffer)) throw new TypeError("shared memory cannot be sent over capnweb");
      const name = TypedArrayPrototypeGetSymbolToStringTag(value);
      const text = base64Of(buffer, TypedArrayPrototypeGetByteOffset(value), TypedArrayPrototypeGetByteLength(value));
      if (name === "Float16Array") throw new TypeError("a Float16Array cannot be sent over capnweb");
      return name === "Uint8Array" ? ["bytes", text] : ["bytes", text, name];
    }
    if (core.isNativeError(value) || ObjectPrototypeIsPrototypeOf(ErrorPrototype, value)) {
      return this.errorValue(session, value, depth);
    }
    const proto = ObjectGetPrototypeOf(value);
    if ((proto !== ObjectPrototype && proto !== null) || core.isProxy(value)) {
      const kind = kindOf(value);
      const hint = core.isMap(value)
        ? " (capnweb has no Map: send an object, or an array of [key, value] pairs)"
        : core.isSet(value)
        ? " (capnweb has no Set: send an array)"
        : "";
      throw new TypeError(
        `${kind} cannot be sent over capnweb${hint}: only plain objects, arrays, primitives, Dates, ` +
          "byte arrays, errors, RpcTargets and functions can",
      );
    }
    const out = { __proto__: null };
    const keys = ObjectKeys(value);
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      if (!ignoredKey(key)) out[key] = this.encode(session, value[key], depth + 1);
    }
    return out;
  }

  /** An Error as a value: name, message, and its own properties that capnweb can carry; no stack. */
  errorValue(session, error, depth) {
    let name = "Error";
    let message = "";
    let props = null;
    try {
      name = `${error.name ?? "Error"}`;
      message = `${error.message ?? ""}`;
      const keys = ObjectKeys(error);
      if (ReflectHas(error, "cause") && !ArrayPrototypeIncludes(keys, "cause")) ArrayPrototypePush(keys, "cause");
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        if (key === "name" || key === "message" || key === "stack" || ignoredKey(key)) continue;
        try {
          const encoded = this.encode(session, error[key], depth + 1);
          props ??= { __proto__: null };
          props[key] = encoded;
        } catch {
          // What cannot be sent is left out, as capnweb does.
        }
      }
    } catch {
      // A throwing getter: what was read stands.
    }
    return props === null ? ["error", name, message] : ["error", name, message, null, props];
  }

  /** A stub sent back: the client's own object or result by its id, anything else exported. */
  describeStub(session, stub) {
    const { hook, path } = this.tools.stubInfo(stub);
    if (hook.session === session && hook.kind === this.tools.IMPORT) {
      return path.length === 0 ? ["import", hook.id] : ["pipeline", hook.id, path];
    }
    if (hook.session === session && hook.kind === this.tools.RESULT && !hook.entry.settled) {
      return ["pipeline", hook.id, path];
    }
    return session.exportLocal(stub);
  }

  /** The capnweb form of one of the session's messages. */
  message(message) {
    switch (message[0]) {
      case "push": {
        const [, target, path, args] = message;
        // The arguments are an array of expressions, not an escaped array.
        return ["push", args === undefined ? ["pipeline", target, path] : ["pipeline", target, path, args[0]]];
      }
      case "reject":
        return ["reject", message[1], errorExpression(message[2])];
      case "abort":
        return ["abort", errorExpression(message[1])];
      default:
        // pull, resolve and release are the same.
        return message;
    }
  }

  /** Sends a batch of the session's messages, one capnweb message each. */
  send(session, batch) {
    const texts = [];
    for (let i = 0; i < batch.length; i++) {
      const message = batch[i];
      let text = JSONStringify(this.message(message));
      if (text.length > MAX_MESSAGE) {
        if (message[0] !== "resolve") {
          throw new RangeError(`a capnweb message larger than ${MAX_MESSAGE} characters cannot be sent`);
        }
        const err = new RangeError(`the result is larger than the ${MAX_MESSAGE} characters a capnweb message may hold`);
        text = JSONStringify(["reject", message[1], errorExpression(err)]);
      }
      ArrayPrototypePush(texts, text);
      if (message[0] === "resolve" || message[0] === "reject") this.pulled.delete(message[1]);
    }
    op_rpc_send_text(session.id, texts);
    if (this.drained !== null && this.pulled.size === 0) {
      const drained = this.drained;
      this.drained = null;
      drained();
    }
  }

  // Receiving.

  /** Handles one message from the client (a TypeError for one that is not capnweb's aborts). */
  receive(session, received) {
    const text = received.text;
    if (typeof text !== "string") throw new TypeError("bad RPC message: not text");
    if (text.length > MAX_MESSAGE) {
      throw new RangeError(`a capnweb message larger than ${MAX_MESSAGE} characters`);
    }
    let message;
    try {
      message = JSONParse(text);
    } catch {
      throw new TypeError(`bad RPC message: not JSON: ${StringPrototypeSlice(text, 0, 200)}`);
    }
    if (!ArrayIsArray(message)) throw bad(message);
    switch (message[0]) {
      case "push":
        if (message.length !== 2) throw bad(message);
        this.push(session, message[1]);
        return;
      case "pull":
        if (message.length !== 2 || !isId(message[1])) throw bad(message);
        this.pulled.add(message[1]);
        session.handle(["pull", message[1]], false);
        return;
      case "resolve":
      case "reject": {
        if (message.length !== 3 || !isId(message[1])) throw bad(message);
        const decoder = new Decoder(session, this);
        let value = decoder.decode(message[2], 0);
        if (message[0] === "reject") {
          session.handle(["reject", message[1], errorInfoOf(value)], false);
        } else {
          // A value naming this side's results resolves once they are in.
          if (decoder.markers) value = quiet(session.substitute(value, new SafeSet()));
          session.handle(["resolve", message[1], value], false);
        }
        return;
      }
      case "release":
        if (message.length !== 3 || !isId(message[1]) || !isId(message[2]) || message[2] < 0) throw bad(message);
        session.handle(["release", message[1], message[2]], false);
        return;
      case "abort": {
        const value = message.length > 1 ? new Decoder(session, this).decode(message[1], 0) : undefined;
        session.handle(["abort", errorInfoOf(value)], false);
        return;
      }
      case "stream":
      case "pipe":
        throw new TypeError(
          `capnweb streams ("${message[0]}" messages: ReadableStream and WritableStream) are not supported by functions-host`,
        );
      default:
        throw bad(message);
    }
  }

  /** A push: a call or property read on one of this side's exports, or a `.map()`. */
  push(session, expression) {
    if (!ArrayIsArray(expression)) throw bad(["push", expression]);
    const kind = expression[0];
    if (kind === "remap") {
      session.acceptPush(this.remap(session, expression));
      return;
    }
    if (kind !== "pipeline" && kind !== "import") throw bad(["push", expression]);
    const [, id, path, args] = expression;
    if (expression.length < 2 || expression.length > 4 || !isId(id)) throw bad(["push", expression]);
    if (path !== undefined && !isPath(path)) throw bad(["push", expression]);
    if (args !== undefined && !ArrayIsArray(args)) throw bad(["push", expression]);
    const decoder = new Decoder(session, this);
    const decoded = args === undefined ? undefined : decoder.list(args, 0);
    session.handle(["push", id, path ?? [], decoded], decoder.markers);
  }

  /**
   * `["remap", id, path, captures, instructions]`: the client's `.map(fn)` on the value at
   * export `id`, `path`: `fn` recorded as instructions, applied to each element of an array, to
   * nothing for null or undefined, to the value itself otherwise.
   */
  remap(session, expression) {
    const [, id, path, captures, instructions] = expression;
    if (
      expression.length !== 5 || !isId(id) || !isPath(path) || !ArrayIsArray(captures) ||
      !ArrayIsArray(instructions)
    ) {
      throw bad(["push", expression]);
    }
    // Captured: stubs of the client's (`export`) and this side's objects and results (`import`).
    const captured = [];
    for (let i = 0; i < captures.length; i++) {
      const capture = captures[i];
      if (!ArrayIsArray(capture) || capture.length !== 2 || !isId(capture[1])) {
        throw new TypeError(`unknown map capture: ${JSONStringify(capture)}`);
      }
      if (capture[0] === "export") {
        ArrayPrototypePush(captured, { stub: new Decoder(session, this).exported("export", capture[1]) });
      } else if (capture[0] === "import") ArrayPrototypePush(captured, { id: capture[1] });
      else throw new TypeError(`unknown map capture: ${JSONStringify(capture)}`);
    }
    const { invoke } = this.tools;
    return (async () => {
      const values = [];
      for (let i = 0; i < captured.length; i++) {
        const capture = captured[i];
        ArrayPrototypePush(values, capture.id === undefined ? capture.stub : await session.base(capture.id));
      }
      const subject = await invoke(await session.base(id), path, undefined);
      return await this.applyMap(session, subject, values, instructions, 0);
    })();
  }

  async applyMap(session, input, captures, instructions, depth) {
    if (depth > MAX_DEPTH) throw new TypeError("map() calls nested too deep");
    if (instructions.length === 0) throw new TypeError("Invalid empty mapper function.");
    if (input === null || input === undefined) return input;
    if (!ArrayIsArray(input)) return await this.mapOne(session, input, captures, instructions, depth);
    const results = [];
    for (let i = 0; i < input.length; i++) {
      ArrayPrototypePush(results, this.mapOne(session, input[i], captures, instructions, depth));
    }
    return await SafePromiseAll(results);
  }

  /** One application of a map's instructions: variable 0 is the input, each instruction's value the next. */
  async mapOne(session, input, captures, instructions, depth) {
    const variables = [input];
    for (let i = 0; i < instructions.length; i++) {
      const decoder = new Decoder(session, this, { variables, captures, depth });
      const value = decoder.decode(instructions[i], 0);
      ArrayPrototypePush(variables, decoder.markers ? await session.substitute(value, new SafeSet()) : value);
    }
    return variables[variables.length - 1];
  }

  /**
   * The client sends nothing more: whether this codec ends the session itself. An HTTP batch
   * is all in: its session answers every result pulled ("drain"), then ends. (A WebSocket
   * closed ends the session at once.)
   */
  inputEnded(session) {
    if (!this.batch) return false;
    PromisePrototypeCatch(this.drain(session), (err) => session.abort(err));
    return true;
  }

  /** Promises the client sent and did not resolve in the batch never will be. */
  async drain(session) {
    for (const entry of session.imports.values()) {
      if (entry.stub === undefined && !entry.settled) {
        entry.settled = true;
        entry.reject(new Error("the capnweb HTTP batch ended before the client resolved this promise"));
      }
    }
    if (this.pulled.size > 0) {
      await new Promise((resolve) => {
        this.drained = resolve;
      });
    }
    if (session.open) session.close();
  }
}

/**
 * Reads capnweb expressions into values: stubs for the client's exports, this side's objects
 * for `import`, and markers (`markers` set) for results to substitute. In a map's instructions
 * (`map`), ids name the map's variables and captures instead.
 */
class Decoder {
  constructor(session, codec, map) {
    this.session = session;
    this.codec = codec;
    this.map = map;
    this.markers = false;
  }

  list(values, depth) {
    const out = [];
    for (let i = 0; i < values.length; i++) out[i] = this.decode(values[i], depth + 1);
    return out;
  }

  decode(value, depth) {
    if (depth > MAX_DEPTH) throw new TypeError(`a capnweb message nested deeper than ${MAX_DEPTH} levels`);
    if (value === null || typeof value !== "object") return value;
    if (!ArrayIsArray(value)) {
      const keys = ObjectKeys(value);
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        if (ignoredKey(key)) delete value[key];
        else value[key] = this.decode(value[key], depth + 1);
      }
      return value;
    }
    if (value.length === 1 && ArrayIsArray(value[0])) return this.list(value[0], depth);
    const kind = value[0];
    switch (kind) {
      case "undefined":
        if (value.length === 1) return undefined;
        break;
      case "inf":
        return Infinity;
      case "-inf":
        return -Infinity;
      case "nan":
        return NaN;
      case "date":
        if (value[1] === null) return new Date(NaN);
        if (typeof value[1] === "number") return new Date(value[1]);
        break;
      case "bigint":
        if (typeof value[1] === "string") {
          if (value[1].length > MAX_BIGINT_DIGITS) {
            throw new TypeError(`a bigint of more than ${MAX_BIGINT_DIGITS} digits`);
          }
          return BigInt(value[1]);
        }
        break;
      case "bytes":
        return bytesOf(value);
      case "error":
        if (value.length >= 3 && typeof value[1] === "string" && typeof value[2] === "string") {
          return this.error(value, depth);
        }
        break;
      case "export":
      case "promise":
        if (isId(value[1]) && value.length === 2) return this.exported(kind, value[1]);
        break;
      case "import":
      case "pipeline":
        if (value.length >= 2 && value.length <= 4 && isId(value[1])) return this.reference(value, depth);
        break;
      case "remap":
        if (this.map !== undefined) return this.nestedMap(value);
        throw new TypeError("a map() inside a value is not supported");
      default:
        if (typeof kind === "string" && UNSUPPORTED_VALUES[kind] !== undefined) {
          throw new TypeError(`capnweb ${UNSUPPORTED_VALUES[kind]} values are not supported by functions-host`);
        }
        break;
    }
    throw new TypeError(`unknown special value: ${StringPrototypeSlice(JSONStringify(value), 0, 200)}`);
  }

  error(value, depth) {
    const err = this.codec.tools.errorFrom({ name: value[1], message: value[2], stack: undefined });
    if (typeof value[3] === "string") err.stack = value[3];
    const props = value[4];
    if (value.length >= 5 && props !== null && typeof props === "object" && !ArrayIsArray(props)) {
      const keys = ObjectKeys(props);
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        if (key === "name" || key === "message" || key === "stack" || ignoredKey(key)) continue;
        err[key] = this.decode(props[key], depth + 1);
      }
    }
    return err;
  }

  /** A stub (`export`) or promise (`promise`) the client hands over as `id`. */
  exported(kind, id) {
    if (this.map !== undefined) throw new TypeError("A mapper function cannot refer to exports.");
    if (id >= 0) throw new TypeError(`a capnweb client exports negative ids, not ${id}`);
    const session = this.session;
    if (kind === "export") return session.importStub(id);
    // A promise: the client resolves it unasked; the value waits for it.
    if (session.imports.has(id)) throw new TypeError(`the client sent promise ${id} twice`);
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    session.imports.set(id, { id, promise: quiet(promise), resolve, reject, settled: false, pulled: false });
    this.markers = true;
    return new this.codec.tools.PipelineMarker(undefined, [], undefined, promise);
  }

  /** `["import" | "pipeline", id, path?, args?]`: this side's object or result (or a map's variable). */
  reference(value, depth) {
    const [kind, id, path, args] = value;
    if (path !== undefined && !isPath(path)) throw new TypeError(`bad path in ${kind}`);
    if (args !== undefined && !ArrayIsArray(args)) throw new TypeError(`bad arguments in ${kind}`);
    const decodedArgs = args === undefined ? undefined : this.list(args, depth);
    const { PipelineMarker } = this.codec.tools;
    if (this.map !== undefined) {
      const { variables, captures } = this.map;
      let base;
      if (id < 0 && -id <= captures.length) base = captures[-id - 1];
      else if (id >= 0 && id < variables.length) base = variables[id];
      else throw new TypeError(`a map() instruction names no variable ${id}`);
      this.markers = true;
      return new PipelineMarker(undefined, path ?? [], decodedArgs, PromiseResolve(base));
    }
    if (kind === "import" && path === undefined && id <= 0) {
      // A stub of this side's own: the object itself.
      if (id === 0) return this.session.main;
      const entry = this.session.exports.get(id);
      if (entry === undefined || !entry.settled) throw new TypeError(`no such entry on exports table: ${id}`);
      return entry.value;
    }
    this.markers = true;
    return new PipelineMarker(id, path ?? [], decodedArgs, undefined);
  }

  /** A map() inside a map's instructions: its subject and captures are the outer map's variables. */
  nestedMap(value) {
    const [, id, path, captures, instructions] = value;
    if (value.length !== 5 || !isId(id) || !isPath(path) || !ArrayIsArray(captures) || !ArrayIsArray(instructions)) {
      throw new TypeError("bad nested map()");
    }
    const variable = (index) => {
      const { variables, captures: outer } = this.map;
      if (index < 0 && -index <= outer.length) return outer[-index - 1];
      if (index >= 0 && index < variables.length) return variables[index];
      throw new TypeError(`a map() instruction names no variable ${index}`);
    };
    const captured = [];
    for (let i = 0; i < captures.length; i++) {
      const capture = captures[i];
      if (!ArrayIsArray(capture) || capture[0] !== "import" || !isId(capture[1])) {
        throw new TypeError(`unknown map capture: ${JSONStringify(capture)}`);
      }
      ArrayPrototypePush(captured, variable(capture[1]));
    }
    const { session, codec } = this;
    const depth = this.map.depth + 1;
    const promise = quiet((async () => {
      const subject = await codec.tools.invoke(variable(id), path, undefined);
      return await codec.applyMap(session, subject, captured, instructions, depth);
    })());
    this.markers = true;
    return new codec.tools.PipelineMarker(undefined, [], undefined, promise);
  }
}

/** `["bytes", base64, type?]` as a Uint8Array, or as the container it names. */
function bytesOf(value) {
  if (value.length < 2 || value.length > 3) throw new TypeError("bad capnweb bytes value");
  const buffer = bufferOf(value[1]);
  if (value.length === 2) return new Uint8Array(buffer);
  const type = value[2];
  if (type === "ArrayBuffer") return buffer;
  if (type === "DataView") return new DataView(buffer);
  const container = typeof type === "string" ? BYTE_CONTAINERS[type] : undefined;
  if (container === undefined) {
    throw new TypeError(`Unknown bytes type marker: ${StringPrototypeSlice(`${type}`, 0, 64)}`);
  }
  const [Class, size] = container;
  if (ArrayBufferPrototypeGetByteLength(buffer) % size !== 0) {
    throw new TypeError(`Invalid byte length for ${type}; expected a multiple of ${size}`);
  }
  return new Class(buffer);
}

/** A session's error description (name, message, stack) as capnweb sends errors: no stack. */
function errorExpression(info) {
  return ["error", info.name, info.message];
}

/** What an error from the client (any value) says, as the session describes errors. */
function errorInfoOf(value) {
  if (value !== null && typeof value === "object" && ObjectPrototypeIsPrototypeOf(ErrorPrototype, value)) {
    return { name: `${value.name}`, message: `${value.message}`, stack: undefined };
  }
  let message;
  try {
    message = `${value}`;
  } catch {
    message = "(an error that could not be read)";
  }
  return { name: "Error", message, stack: undefined };
}

export { CapnwebCodec };
