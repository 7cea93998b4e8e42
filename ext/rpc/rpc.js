// functions-host: capability RPC between functions (see mod.rs), the JavaScript half.
//
// Both ends of a session run the same protocol, capnweb's: a side `push`es a call (which gets
// the next positive id in its imports, and the same id in the other side's exports), `pull`s the
// results it awaits, and `release`s what it no longer needs; the other side answers pulls with
// `resolve` or `reject`. Values cross in V8's serialization format (structured clone); functions,
// RpcTarget instances and stubs in them travel by reference, as host objects described beside
// the bytes: `["export", id]` (a stub to the sender's object), `["import", id]` (the receiver's
// own object, coming back), `["pipeline", id, path]` (a property of a result the receiver has not
// sent yet) and `["cap", k]` (a capability the host carries: a binding, delegated).
//
// The same session serves a capnweb client outside (the npm `capnweb` package, at `/rpc/{name}`):
// then a codec (capnweb.js) translates between capnweb's JSON messages and these, values and
// stubs included.
//
// A call on a binding opens a session of its own (one per top-level call, as in workerd). The
// caller closes it once nothing of it is in use: no answer awaited and no stub received still
// held. Results never awaited are pulled first, so a pending result used later resolves
// locally.

import { core, primordials } from "ext:core/mod.js";
import { CapnwebCodec } from "ext:rpc/capnweb.js";
import {
  op_rpc_close,
  op_rpc_drop,
  op_rpc_fetch,
  op_rpc_invocation,
  op_rpc_open,
  op_rpc_receive,
  op_rpc_reusable,
  op_rpc_call_started,
  op_rpc_send,
} from "ext:core/ops";

const {
  ArrayIsArray,
  ArrayPrototypeJoin,
  ArrayPrototypeMap,
  ArrayPrototypePush,
  Error,
  FunctionPrototypeToString,
  JSONParse,
  JSONStringify,
  MapPrototypeForEach,
  MapPrototypeSet,
  ObjectCreate,
  ObjectFreeze,
  ObjectGetOwnPropertyDescriptor,
  ObjectGetPrototypeOf,
  ObjectHasOwn,
  ObjectKeys,
  ObjectPrototype,
  ObjectPrototypeIsPrototypeOf,
  Promise,
  PromisePrototypeCatch,
  PromisePrototypeFinally,
  PromisePrototypeThen,
  PromiseReject,
  PromiseResolve,
  Proxy,
  RangeError,
  ReferenceError,
  ReflectApply,
  SafeMap,
  SafeSet,
  SafeWeakMap,
  SetPrototypeAdd,
  SetPrototypeForEach,
  StringPrototypeStartsWith,
  SymbolDispose,
  SyntaxError,
  TypeError,
  URIError,
  EvalError,
} = primordials;

const BRAND = core.hostObjectBrand;
const RESOLVED = PromiseResolve(undefined);
/** Runs `f` in a microtask (as `queueMicrotask`, which the snapshot's builder lacks). */
const defer = (f) => {
  PromisePrototypeThen(RESOLVED, f);
};

/** Base class of objects passed by reference: the receiver gets a stub to call back. */
class RpcTarget {}
const RpcTargetPrototype = RpcTarget.prototype;

/**
 * Base class of a default export whose methods other functions call, as in Workers: one
 * instance per session, with the invocation's `ctx` and `env`.
 */
class WorkerEntrypoint extends RpcTarget {
  constructor(ctx, env) {
    super();
    this.ctx = ctx;
    this.env = env;
  }
}

// What each stub stands for, by the stub (a Proxy) and by its target: module-private, so no
// user code can read or forge it.
const stubs = new SafeWeakMap();

const BINDING = 0; // a capability of the host: { capId, name }
const IMPORT = 1; // an object the other side exported: { session, id }
const RESULT = 2; // the pending result of a call: { session, id, entry }

const stubHandler = {
  __proto__: null,
  get(target, key) {
    const info = stubs.get(target);
    if (typeof key === "symbol") {
      if (key === SymbolDispose) return () => dispose(info);
      return undefined;
    }
    const { hook, path } = info;
    const root = path.length === 0;
    if (key === "then" || key === "catch" || key === "finally") {
      // Awaiting a stub itself gives the stub; awaiting a property or a result fetches it.
      if (root && hook.kind !== RESULT) return undefined;
      const promise = promiseOf(info);
      if (key === "then") return (f, r) => PromisePrototypeThen(promise, f, r);
      if (key === "catch") return (r) => PromisePrototypeCatch(promise, r);
      return (f) => PromisePrototypeFinally(promise, f);
    }
    if (root && hook.kind === BINDING && key === "fetch") return (input, init) => fetchThrough(hook, input, init);
    // What serializing or printing a stub reads: never calls to the other side.
    if (key === "toJSON") return undefined;
    if (key === "toString" || key === "valueOf") return () => "[object RpcStub]";
    const next = [];
    for (let i = 0; i < path.length; i++) ArrayPrototypePush(next, path[i]);
    ArrayPrototypePush(next, key);
    return makeStub(hook, next);
  },
  apply(target, _this, args) {
    return call(stubs.get(target), args);
  },
  set: () => false,
  defineProperty: () => false,
  deleteProperty: () => false,
  has: () => false,
  ownKeys: () => [],
  getOwnPropertyDescriptor: () => undefined,
  getPrototypeOf: () => null,
  setPrototypeOf: () => false,
};

function makeStub(hook, path) {
  const target = () => {};
  const info = { hook, path: ObjectFreeze(path), promise: null };
  const stub = new Proxy(target, stubHandler);
  stubs.set(target, info);
  stubs.set(stub, info);
  return stub;
}

function stale(message) {
  return new Error(message ?? "RPC stub is no longer valid: the invocation that received it has ended");
}

/** The promise a non-root stub (or a call's result) stands for, made on first use. */
function promiseOf(info) {
  if (info.promise === null) {
    info.promise = fetchValue(info);
    // Awaited by the caller, or never: either way not an unhandled rejection of ours.
    PromisePrototypeCatch(info.promise, () => {});
  }
  return info.promise;
}

function fetchValue(info) {
  const { hook, path } = info;
  try {
    if (hook.kind === RESULT) {
      const entry = hook.entry;
      if (path.length === 0) return resultPromise(hook.session, entry);
      if (entry.settled || !hook.session.open) {
        return PromisePrototypeThen(resultPromise(hook.session, entry), (value) => follow(value, path));
      }
      return hook.session.pushCall(hook.id, path, undefined, true);
    }
    if (hook.kind === IMPORT) return hook.session.pushCall(hook.id, path, undefined, true);
    return openSession(hook).pushCall(0, path, undefined, true);
  } catch (err) {
    return PromiseReject(err);
  }
}

/** A call through a stub: a new session for a binding, a pipelined call otherwise. */
function call(info, args) {
  const { hook, path } = info;
  try {
    if (hook.kind === BINDING) {
      const session = openSession(hook);
      try {
        return session.pushCall(0, path, args, false);
      } catch (err) {
        // Nothing was sent: a session opened for this call alone ends here.
        if (!session.reusable && session.imports.size === 0) session.close();
        throw err;
      }
    }
    if (hook.kind === IMPORT) return hook.session.pushCall(hook.id, path, args, false);
    const entry = hook.entry;
    if (entry.settled || !hook.session.open) {
      // The result is here already: the call is made on it locally.
      return PromisePrototypeThen(resultPromise(hook.session, entry), (value) => callAt(value, path, args));
    }
    return hook.session.pushCall(hook.id, path, args, false);
  } catch (err) {
    return PromiseReject(err);
  }
}

function resultPromise(session, entry) {
  if (!entry.pulled && !entry.settled && session.open) session.pull(entry);
  return entry.promise;
}

/** `value` at `path`, as a plain property read (values that arrived are the caller's own). */
function follow(value, path) {
  for (let i = 0; i < path.length; i++) value = value[path[i]];
  return value;
}

function callAt(value, path, args) {
  const parent = path.length === 0 ? undefined : follow(value, path.slice(0, -1));
  const method = path.length === 0 ? value : parent[path[path.length - 1]];
  if (typeof method !== "function") {
    throw new TypeError(`${ArrayPrototypeJoin(path, ".") || "the result"} is not a function`);
  }
  return ReflectApply(method, parent, args);
}

function dispose(info) {
  const { hook } = info;
  if (hook.kind === IMPORT) hook.session.releaseImport(hook.id);
  else if (hook.kind === BINDING && info.path.length === 0) op_rpc_drop(hook.capId);
}

/** Opens a session with the function behind a binding (which throws on a refused hop). */
function openSession(hook) {
  // A warm callee serves one caller's calls through a binding in one session, each as a new
  // call (its limits start again).
  if (hook.session !== null && hook.session.open) return hook.session;
  const id = op_rpc_open(hook.capId);
  const session = new Session(id, undefined, true, hook.name);
  if (op_rpc_reusable(id)) {
    session.reusable = true;
    hook.session = session;
  }
  session.pump();
  return session;
}

/** `env.NAME.fetch(input, init)`: the request goes to the target's fetch handler in-process. */
async function fetchThrough(hook, input, init) {
  const request = new globalThis.Request(input, init);
  const body = request.body === null ? null : new Uint8Array(await request.arrayBuffer());
  const headers = [];
  for (const entry of request.headers) ArrayPrototypePush(headers, [entry[0], entry[1]]);
  const response = await op_rpc_fetch(hook.capId, request.method, request.url, headers, body);
  const nullBody = response.status === 101 || response.status === 204 || response.status === 205 ||
    response.status === 304;
  return new globalThis.Response(nullBody ? null : response.body, {
    status: response.status,
    headers: response.headers,
  });
}

/** A function's error as it crosses: name, message, stack. */
function errorInfo(err) {
  if (err !== null && typeof err === "object") {
    let name = "Error";
    let message = "";
    let stack;
    try {
      name = `${err.name ?? "Error"}`;
      message = `${err.message ?? ""}`;
      stack = typeof err.stack === "string" ? err.stack : undefined;
    } catch {
      // A throwing getter: what was read stands.
    }
    return { name, message, stack };
  }
  return { name: "Error", message: `${err}`, stack: undefined };
}

const ERRORS = { __proto__: null, Error, TypeError, RangeError, ReferenceError, SyntaxError, URIError, EvalError };

/** The error a caller sees: of the callee's class when it is a standard one, named as it was. */
function errorFrom(info) {
  const Class = ERRORS[info.name] ?? Error;
  const err = new Class(info.message);
  if (Class === Error && info.name !== "Error") err.name = info.name;
  if (info.stack !== undefined) err.stack = info.stack;
  return err;
}

/**
 * Where a value sent through a pipeline is to be substituted once its result is in: what
 * `path` leads to from export `id` (or from what `promise` resolves to, when given), called
 * with `args` when there are any.
 */
class PipelineMarker {
  constructor(id, path, args, promise) {
    this.id = id;
    this.path = path;
    this.args = args;
    this.promise = promise;
  }
}

/** Whether `value` is passed by reference: an RpcTarget (or WorkerEntrypoint) instance. */
function isRpcTarget(value) {
  return ObjectPrototypeIsPrototypeOf(RpcTargetPrototype, value);
}

function isPlain(value) {
  const proto = ObjectGetPrototypeOf(value);
  return proto === ObjectPrototype || proto === null;
}

/** The value at `key` of `object`, as a call over RPC may reach it (capnweb's and workerd's rules). */
function reach(object, key, path) {
  if (typeof key !== "string" && typeof key !== "number") {
    throw new TypeError("an RPC path holds only property names");
  }
  if (key === "__proto__" || key === "constructor") {
    throw new TypeError(`"${key}" cannot be reached over RPC`);
  }
  if (object === null || object === undefined) {
    throw new TypeError(`cannot read "${key}" of ${object} (${ArrayPrototypeJoin(path, ".")})`);
  }
  if (stubs.has(object)) return object[key];
  if (typeof object === "function") {
    throw new TypeError(`"${key}": the properties of a function cannot be reached over RPC`);
  }
  if (typeof object !== "object") {
    throw new TypeError(`"${key}" of a ${typeof object} cannot be reached over RPC`);
  }
  if (isRpcTarget(object)) {
    // Methods and getters of its classes only: no own (instance) property, nothing of Object.
    if (ObjectHasOwn(object, key)) {
      throw new TypeError(`"${key}" is an instance property, which RPC does not expose: only methods and getters are`);
    }
    let proto = ObjectGetPrototypeOf(object);
    while (proto !== null && proto !== ObjectPrototype && proto !== RpcTargetPrototype) {
      if (ObjectGetOwnPropertyDescriptor(proto, key) !== undefined) return object[key];
      proto = ObjectGetPrototypeOf(proto);
    }
    return undefined;
  }
  if (ArrayIsArray(object) || isPlain(object)) {
    return ObjectHasOwn(object, key) ? object[key] : undefined;
  }
  throw new TypeError(`"${key}" cannot be reached over RPC: only plain objects, arrays and RpcTargets are`);
}

/** Calls (or reads) what `path` leads to from `base`, by the rules of `reach`. */
async function invoke(base, path, args) {
  let parent;
  let value = base;
  for (let i = 0; i < path.length; i++) {
    parent = value;
    value = reach(value, path[i], path);
  }
  if (args === undefined) return await value;
  if (typeof value !== "function") {
    const name = path.length === 0 ? "the default export" : `"${ArrayPrototypeJoin(path, ".")}"`;
    throw new TypeError(`${name} is not a method of the function called`);
  }
  return await ReflectApply(value, parent, args);
}

/**
 * One end of a session. Its messages cross as V8 serialization bytes, or through `codec` (a
 * capnweb client's session: see capnweb.js) when there is one.
 */
class Session {
  constructor(id, main, client, peerName, codec = null) {
    this.id = id;
    this.main = main;
    this.client = client;
    this.peerName = peerName;
    this.codec = codec;
    this.open = true;
    // It carries its caller's further calls through the binding (see openSession).
    this.reusable = false;
    // Calls on the main object under way (served side).
    this.callsUnderWay = 0;
    this.closing = false;
    this.imports = new SafeMap();
    this.exports = new SafeMap();
    this.exportIds = new SafeMap();
    // How many export ids each local object has (a codec may give it a new one each time).
    this.exportCounts = new SafeMap();
    this.nextImport = 1;
    this.nextExport = -1;
    this.nextPeerPush = 1;
    this.outbox = [];
    this.hostObjects = [];
    this.descriptors = [];
    this.caps = [];
    this.flushing = false;
    this.pendingPulls = 0;
    this.liveStubs = 0;
    this.ended = null;
    this.whenEnded = new Promise((resolve) => {
      this.ended = resolve;
    });
  }

  // Sending.

  enqueue(message) {
    ArrayPrototypePush(this.outbox, message);
    if (!this.flushing) {
      this.flushing = true;
      // Twice deferred: an `await` on a call made in the same turn asks for its value (`then`)
      // in a microtask of its own, and goes out in the same batch.
      defer(() => defer(() => this.flush()));
    }
  }

  flush() {
    this.flushing = false;
    if (!this.open || this.outbox.length === 0) return;
    const batch = this.outbox;
    const hostObjects = this.hostObjects;
    const descriptors = this.descriptors;
    const caps = this.caps;
    this.outbox = [];
    if (this.codec !== null) {
      try {
        this.codec.send(this, batch);
      } catch (err) {
        this.end(`${err.message}`);
      }
      return;
    }
    this.hostObjects = [];
    this.descriptors = [];
    this.caps = [];
    let bytes;
    try {
      bytes = core.serialize(batch, { hostObjects, forStorage: true });
    } catch (err) {
      this.abort(err);
      return;
    }
    try {
      op_rpc_send(this.id, bytes, descriptors.length === 0 ? null : JSONStringify(descriptors), caps);
    } catch (err) {
      this.end(`${err.message}`);
      return;
    }
    // Calls nobody awaits are read (then the session closes), so no callee waits forever.
    this.checkIdle();
  }

  /** A placeholder for a host object described by `descriptor`. */
  placeholder(descriptor) {
    const object = { [BRAND]: true };
    ArrayPrototypePush(this.hostObjects, object);
    ArrayPrototypePush(this.descriptors, descriptor);
    return object;
  }

  /** `value` ready for V8's serializer: what goes by reference replaced by placeholders. */
  wire(value, seen) {
    switch (typeof value) {
      case "function": {
        const info = stubs.get(value);
        // A call's result that is here already goes as its value.
        if (info !== undefined && info.hook.kind === RESULT && info.hook.entry.hasValue) {
          return this.wire(follow(info.hook.entry.value, info.path), seen);
        }
        return this.placeholder(info !== undefined ? this.describeStub(value) : this.exportLocal(value));
      }
      case "symbol":
        throw new TypeError("a Symbol cannot be sent over RPC");
      case "object":
        break;
      default:
        return value;
    }
    if (value === null) return null;
    let copy = seen.get(value);
    if (copy !== undefined) return copy;
    if (core.isPromise(value)) throw new TypeError("a Promise cannot be sent over RPC: await it first");
    if (isRpcTarget(value)) return this.placeholder(this.exportLocal(value));
    if (ArrayIsArray(value)) {
      copy = [];
      seen.set(value, copy);
      for (let i = 0; i < value.length; i++) copy[i] = this.wire(value[i], seen);
      return copy;
    }
    if (core.isMap(value)) {
      copy = new SafeMap();
      seen.set(value, copy);
      MapPrototypeForEach(value, (v, k) => MapPrototypeSet(copy, this.wire(k, seen), this.wire(v, seen)));
      return copy;
    }
    if (core.isSet(value)) {
      copy = new SafeSet();
      seen.set(value, copy);
      SetPrototypeForEach(value, (v) => SetPrototypeAdd(copy, this.wire(v, seen)));
      return copy;
    }
    if (
      core.isDate(value) || core.isRegExp(value) || core.isAnyArrayBuffer(value) ||
      core.isArrayBufferView(value) || core.isBoxedPrimitive(value) || core.isNativeError(value)
    ) {
      return value;
    }
    if (core.isWeakMap(value) || core.isWeakSet(value) || core.isProxy(value) || core.isGeneratorObject(value)) {
      throw new TypeError("a WeakMap, WeakSet, Proxy or generator cannot be sent over RPC");
    }
    if (value[BRAND] !== undefined) {
      // A platform object with a serializer of its own (a Blob): not something RPC carries.
      throw new TypeError("this object cannot be sent over RPC: only plain data, RpcTargets and functions can");
    }
    copy = ObjectCreate(null);
    seen.set(value, copy);
    const keys = ObjectKeys(value);
    for (let i = 0; i < keys.length; i++) copy[keys[i]] = this.wire(value[keys[i]], seen);
    return copy;
  }

  /** The descriptor of a stub sent on this session. */
  describeStub(stub) {
    const { hook, path } = stubs.get(stub);
    if (hook.session === this && hook.kind === IMPORT) {
      return path.length === 0 ? ["import", hook.id] : ["pipeline", hook.id, path];
    }
    if (hook.session === this && hook.kind === RESULT && !hook.entry.settled) {
      return ["pipeline", hook.id, path];
    }
    if (hook.kind === BINDING && path.length === 0) {
      ArrayPrototypePush(this.caps, hook.capId);
      return ["cap", this.caps.length - 1];
    }
    // Anything else is called through this side.
    return this.exportLocal(stub);
  }

  /** Exports a local object (or a stub of another session) on this session. */
  exportLocal(value) {
    let id = this.codec?.freshExports ? undefined : this.exportIds.get(value);
    if (id === undefined) {
      id = this.nextExport--;
      this.exportIds.set(value, id);
      this.exportCounts.set(value, (this.exportCounts.get(value) ?? 0) + 1);
      this.exports.set(id, { value, settled: true, promise: null, refcount: 0, pulled: false });
    }
    this.exports.get(id).refcount++;
    return ["export", id];
  }

  /** Pushes a call (or, without `args`, a property read) on export `target` of the other side. */
  pushCall(target, path, args, pull) {
    if (!this.open) throw stale();
    if (this.codec?.refusesCalls !== undefined) throw new Error(this.codec.refusesCalls);
    const message = ["push", target, path, args === undefined ? undefined : this.valueOutOrUndo(args)];
    const id = this.nextImport++;
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    PromisePrototypeCatch(promise, () => {});
    const entry = { id, promise, resolve, reject, settled: false, pulled: false };
    this.imports.set(id, entry);
    this.enqueue(message);
    if (pull) {
      this.pull(entry);
      return promise;
    }
    return makeStub({ kind: RESULT, session: this, id, entry }, []);
  }

  pull(entry) {
    entry.pulled = true;
    this.pendingPulls++;
    this.enqueue(["pull", entry.id]);
  }

  releaseImport(id) {
    const entry = this.imports.get(id);
    if (entry === undefined || entry.stub === undefined) return;
    this.imports.delete(id);
    this.liveStubs--;
    if (this.open) this.enqueue(["release", id, entry.refcount]);
    this.checkIdle();
  }

  // Receiving.

  async pump() {
    while (true) {
      let received;
      try {
        received = await op_rpc_receive(this.id);
      } catch (err) {
        this.end(`${err.message}`);
        return;
      }
      if (received.ended !== null) {
        // A codec may end the session itself (an HTTP batch: it answers first).
        if (!this.open || this.codec === null || !this.codec.inputEnded(this)) this.end(received.ended);
        return;
      }
      try {
        this.receive(received);
      } catch (err) {
        this.abort(err);
        return;
      }
    }
  }

  receive(received) {
    if (this.codec !== null) {
      this.codec.receive(this, received);
      return;
    }
    let markers = false;
    let hostObjects;
    if (received.descriptors !== null) {
      const descriptors = JSONParse(received.descriptors);
      hostObjects = ArrayPrototypeMap(descriptors, (d) => {
        switch (d[0]) {
          case "export":
            return this.importStub(d[1]);
          case "import": {
            const entry = this.exports.get(d[1]);
            if (entry === undefined || !entry.settled) throw new Error(`RPC: no export ${d[1]}`);
            return entry.value;
          }
          case "pipeline":
            markers = true;
            return new PipelineMarker(d[1], d[2]);
          case "cap": {
            const [capId, name] = received.caps[d[1]];
            return makeStub({ kind: BINDING, capId, name, session: null }, []);
          }
          default:
            throw new Error(`RPC: bad descriptor ${d[0]}`);
        }
      });
    }
    const batch = core.deserialize(received.bytes, { hostObjects, forStorage: true });
    for (let i = 0; i < batch.length; i++) this.handle(batch[i], markers);
  }

  importStub(id) {
    let entry = this.imports.get(id);
    if (entry === undefined) {
      entry = { id, stub: makeStub({ kind: IMPORT, session: this, id }, []), refcount: 0 };
      this.imports.set(id, entry);
      this.liveStubs++;
    }
    entry.refcount++;
    return entry.stub;
  }

  handle(message, markers) {
    switch (message[0]) {
      case "push": {
        const [, target, path, args] = message;
        const promise = this.evaluate(target, path, args, markers);
        if (target === 0 && !this.client) {
          // A call on the main object is a new call of the invocation: its limits start again
          // as it starts, and as the last one under way ends (so that the next one starts
          // with them whole).
          op_rpc_call_started();
          this.callsUnderWay++;
          const ended = () => {
            if (--this.callsUnderWay === 0) op_rpc_call_started();
          };
          PromisePrototypeThen(promise, ended, ended);
        }
        this.acceptPush(promise);
        return;
      }
      case "pull": {
        const id = message[1];
        const entry = this.exports.get(id);
        if (entry === undefined) {
          this.enqueue(["reject", id, errorInfo(new Error(`RPC: no result ${id} to pull`))]);
          return;
        }
        if (entry.pulled) return;
        entry.pulled = true;
        PromisePrototypeThen(entry.promise ?? PromiseResolve(entry.value), (value) => this.answer(id, value), (err) => {
          this.enqueue(["reject", id, errorInfo(err)]);
        });
        return;
      }
      case "resolve":
      case "reject": {
        const entry = this.imports.get(message[1]);
        if (entry === undefined || entry.settled) return;
        entry.settled = true;
        if (entry.pulled) this.pendingPulls--;
        if (message[0] === "reject") {
          entry.reject(errorFrom(message[2]));
        } else if (markers) {
          // A value holding results of this side's own calls, not yet sent.
          PromisePrototypeThen(this.substitute(message[2], new SafeSet()), (value) => {
            entry.value = value;
            entry.hasValue = true;
            entry.resolve(value);
          }, entry.reject);
        } else {
          entry.value = message[2];
          entry.hasValue = true;
          entry.resolve(message[2]);
        }
        // Its value is the caller's now: the other side may forget it.
        this.imports.delete(message[1]);
        this.enqueue(["release", message[1], 1]);
        this.checkIdle();
        return;
      }
      case "release": {
        const [, id, count] = message;
        const entry = this.exports.get(id);
        if (entry === undefined) return;
        entry.refcount -= count;
        if (entry.refcount <= 0) {
          this.exports.delete(id);
          // Results of calls are the caller's; what this side exported is disposed (once no
          // id of it is left).
          if (id < 0) {
            const left = this.exportCounts.get(entry.value) - 1;
            if (left > 0) {
              this.exportCounts.set(entry.value, left);
            } else {
              this.exportCounts.delete(entry.value);
              this.exportIds.delete(entry.value);
              disposeLocal(entry.value);
            }
          }
        }
        return;
      }
      case "abort":
        this.end(errorFrom(message[1]).message);
        return;
      default:
        throw new Error(`RPC: unknown message ${message[0]}`);
    }
  }

  /**
   * The result of the other side's next push, `promise`: it gets the next id in this side's
   * exports.
   */
  acceptPush(promise) {
    const id = this.nextPeerPush++;
    const entry = { value: undefined, settled: false, promise, refcount: 1, pulled: false, error: null };
    this.exports.set(id, entry);
    PromisePrototypeThen(promise, (value) => {
      entry.value = value;
      entry.settled = true;
    }, (err) => {
      entry.error = err;
      entry.settled = true;
    });
  }

  /** `valueOut(value)`; when it throws, the placeholders it made are not sent. */
  valueOutOrUndo(value) {
    const marks = [this.hostObjects.length, this.descriptors.length, this.caps.length];
    try {
      return this.valueOut(value);
    } catch (err) {
      this.hostObjects.length = marks[0];
      this.descriptors.length = marks[1];
      this.caps.length = marks[2];
      throw err;
    }
  }

  /** `value` as it is sent: by the codec, or ready for V8's serializer. */
  valueOut(value) {
    return this.codec !== null ? this.codec.value(this, value) : this.wire(value, new SafeMap());
  }

  /** Sends the value of a pulled result (what cannot be sent is its error instead). */
  answer(id, value) {
    let wired;
    try {
      wired = this.valueOutOrUndo(value);
    } catch (err) {
      this.enqueue(["reject", id, errorInfo(err)]);
      return;
    }
    this.enqueue(["resolve", id, wired]);
  }

  /** What export `id` of this side stands for (0: the main object), once it is settled. */
  async base(id) {
    if (id === 0) {
      if (this.main === undefined) throw new TypeError("the caller exports nothing to call back but what it passed");
      return this.main;
    }
    const entry = this.exports.get(id);
    if (entry === undefined) throw new Error(`RPC: no export ${id}`);
    return entry.promise !== null ? await entry.promise : entry.value;
  }

  async evaluate(target, path, args, markers) {
    const base = await this.base(target);
    if (base instanceof NoMethods) throw new TypeError(base.message);
    if (target === 0 && path.length > 0 && HANDLERS.has(path[0]) && this.main !== undefined) {
      throw new TypeError(`"${path[0]}" is the function's handler, not a method: send it a request with fetch()`);
    }
    if (markers && args !== undefined) args = await this.substitute(args, new SafeSet());
    return await invoke(base, path, args);
  }

  /** `value` with the results it names by pipeline put in their place. */
  async substitute(value, seen) {
    if (value instanceof PipelineMarker) {
      const base = value.promise !== undefined ? await value.promise : await this.base(value.id);
      const args = value.args === undefined ? undefined : await this.substitute(value.args, seen);
      return await invoke(base, value.path, args);
    }
    if (value === null || typeof value !== "object" || stubs.has(value) || seen.has(value)) return value;
    seen.add(value);
    if (ArrayIsArray(value) || isPlain(value)) {
      const keys = ObjectKeys(value);
      for (let i = 0; i < keys.length; i++) value[keys[i]] = await this.substitute(value[keys[i]], seen);
    }
    return value;
  }

  /**
   * A client with nothing in use closes its session at once (before the code awaiting its last
   * answer runs, which may call again: the callee is free for it then); results never read
   * are read first, so that they resolve locally later.
   */
  checkIdle() {
    if (this.client && this.open && !this.closing) this.closeIfIdle();
  }

  closeIfIdle() {
    if (!this.open || this.reusable || this.pendingPulls > 0 || this.liveStubs > 0) return;
    let unread = false;
    for (const entry of this.imports.values()) {
      if (entry.stub === undefined && !entry.settled && !entry.pulled) {
        this.pull(entry);
        unread = true;
      }
    }
    if (!unread) this.close();
  }

  close() {
    this.closing = true;
    // Releases would only precede the end, which releases everything.
    const outbox = this.outbox;
    this.outbox = [];
    for (let i = 0; i < outbox.length; i++) {
      if (outbox[i][0] !== "release") ArrayPrototypePush(this.outbox, outbox[i]);
    }
    this.flush();
    this.open = false;
    op_rpc_close(this.id);
    this.finish(() => stale(`the RPC session with ${this.peerName} has ended`));
  }

  abort(err) {
    if (!this.open) return;
    this.outbox = [];
    this.enqueue(["abort", errorInfo(err)]);
    this.flush();
    this.open = false;
    op_rpc_close(this.id);
    this.finish(() => err);
  }

  end(message) {
    if (!this.open) {
      this.finish(null);
      return;
    }
    this.open = false;
    op_rpc_close(this.id);
    this.finish(() => new Error(message));
  }

  /**
   * Fails what is still awaited with the error `failure` makes (if anything is: an error
   * records a stack, which costs), disposes what was exported, and says the session is over.
   */
  finish(failure) {
    let err;
    for (const entry of this.imports.values()) {
      if (entry.stub === undefined && !entry.settled) {
        entry.settled = true;
        err ??= failure?.() ?? stale();
        entry.reject(err);
      }
    }
    this.imports.clear();
    for (const [id, entry] of this.exports) if (id < 0) disposeLocal(entry.value);
    this.exports.clear();
    this.exportIds.clear();
    this.exportCounts.clear();
    if (this.ended !== null) {
      this.ended();
      this.ended = null;
    }
  }
}

/** Runs an RpcTarget's `Symbol.dispose` once the other side has released it. */
function disposeLocal(value) {
  if (value !== null && (typeof value === "object" || typeof value === "function") && isRpcTarget(value)) {
    try {
      const disposer = value[SymbolDispose];
      if (typeof disposer === "function") ReflectApply(disposer, value, []);
    } catch (err) {
      console.error("Uncaught (in Symbol.dispose)", err);
    }
  }
}

/**
 * What a default export offers to callers: a class (WorkerEntrypoint-style) is instantiated
 * with `ctx` and `env`; an object or a function is offered as it is.
 */
function mainOf(handler, env, ctx) {
  if (typeof handler === "function" && StringPrototypeStartsWith(FunctionPrototypeToString(handler), "class")) {
    return new handler(ctx, env);
  }
  if (typeof handler === "function") {
    // A plain function is the HTTP handler: it takes the host's event and env, not a caller's.
    return new NoMethods("the function's default export is a function (its HTTP handler): it has no methods to call; send it a request with fetch()");
  }
  return handler;
}

/** The main object of a function that has no methods, and why. */
class NoMethods {
  constructor(message) {
    this.message = message;
  }
}

/** Handlers the host calls (with its own request, env and ctx): never methods for a caller. */
const HANDLERS = new SafeSet(["fetch", "scheduled", "queue", "tail", "email", "test"]);

/**
 * The RPC of the invocation under way: its bindings put on `env` as stubs; the session it
 * serves, if it was called through a binding (`{ id, caller }`), or null.
 */
function begin(env) {
  const rpc = op_rpc_invocation();
  for (let i = 0; i < rpc.bindings.length; i++) {
    const [name, capId] = rpc.bindings[i];
    env[name] = makeStub({ kind: BINDING, capId, name, session: null }, []);
  }
  return rpc.serving;
}

// What capnweb.js needs of this module's private state.
const CODEC_TOOLS = ObjectFreeze({
  __proto__: null,
  stubInfo: (value) => stubs.get(value),
  IMPORT,
  RESULT,
  isRpcTarget,
  PipelineMarker,
  errorFrom,
  invoke,
});

/**
 * Serves the session of an invocation called through a binding (or by a capnweb client), until
 * the caller is done.
 */
function serve(serving, handler, env, ctx) {
  const codec = serving.capnweb === null ? null : new CapnwebCodec(serving.capnweb === "batch", CODEC_TOOLS);
  const session = new Session(serving.id, mainOf(handler, env, ctx), false, serving.caller, codec);
  session.pump();
  return session.whenEnded;
}

/**
 * Runs calls of every kind through two connected sessions of this isolate (`loopback` in
 * mod.rs), while the base snapshot is built, so that their code is compiled in the snapshot
 * rather than in every isolate that calls or is called.
 */
async function warmUp(clientId, serverId) {
  const main = new (class extends RpcTarget {
    add(a, b) { return a + b; }
    user(id) { return { id, name: `user${id}`, tags: [1n, new Date(0), new Map(), new Set(), new Uint8Array(1)] }; }
    counter() {
      let n = 0;
      return new (class extends RpcTarget { increment() { return ++n; } })();
    }
    async twice(f, x) { return await f(await f(x)); }
    fail() { throw new RangeError("warm"); }
  })();
  const server = new Session(serverId, main, false, "warm-up");
  server.pump();
  const client = new Session(clientId, undefined, false, "warm-up");
  client.pump();
  const stub = makeStub({ kind: IMPORT, session: client, id: 0 }, []);
  await stub.add(1, 2);
  await stub.user(1).name;
  const counter = await stub.counter();
  await counter.increment();
  counter[SymbolDispose]();
  await stub.twice((x) => x + 1, 1);
  await stub.fail().catch(() => null);
  client.close();
  await server.whenEnded;
}

export { begin, RpcTarget, serve, warmUp, WorkerEntrypoint };
