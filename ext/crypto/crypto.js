// functions-host: the `Crypto` interface of Web Crypto, without `subtle` (yet).

import { core, primordials } from "ext:core/mod.js";
import { op_crypto_get_random_values, op_crypto_random_uuid } from "ext:core/ops";

const {
  ArrayBufferIsView,
  ArrayPrototypeIncludes,
  Symbol,
  SymbolFor,
  TypeError,
  TypedArrayPrototypeGetBuffer,
  TypedArrayPrototypeGetByteLength,
  TypedArrayPrototypeGetByteOffset,
  TypedArrayPrototypeGetSymbolToStringTag,
  Uint8Array,
} = primordials;

const { DOMException } = core.loadExtScript("ext:deno_web/01_dom_exception.js");
const webidl = core.loadExtScript("ext:deno_webidl/00_webidl.js");

const MAX_RANDOM_BYTES = 65536;
const INTEGER_ARRAYS = [
  "Int8Array",
  "Uint8Array",
  "Uint8ClampedArray",
  "Int16Array",
  "Uint16Array",
  "Int32Array",
  "Uint32Array",
  "BigInt64Array",
  "BigUint64Array",
];

const illegalConstructorKey = Symbol("illegalConstructorKey");

class Crypto {
  constructor(key) {
    if (key !== illegalConstructorKey) {
      webidl.illegalConstructor();
    }
    this[webidl.brand] = webidl.brand;
  }

  getRandomValues(typedArray) {
    webidl.assertBranded(this, CryptoPrototype);
    const prefix = "Failed to execute 'getRandomValues' on 'Crypto'";
    webidl.requiredArguments(arguments.length, 1, prefix);
    if (!ArrayBufferIsView(typedArray)) {
      throw new TypeError(`${prefix}: Argument 1 is not an ArrayBufferView`);
    }
    const tag = TypedArrayPrototypeGetSymbolToStringTag(typedArray);
    if (tag === undefined || !ArrayPrototypeIncludes(INTEGER_ARRAYS, tag)) {
      throw new DOMException(
        `${prefix}: the provided ArrayBufferView is not an integer array type`,
        "TypeMismatchError",
      );
    }
    const byteLength = TypedArrayPrototypeGetByteLength(typedArray);
    if (byteLength > MAX_RANDOM_BYTES) {
      throw new DOMException(
        `${prefix}: the ArrayBufferView's byte length (${byteLength}) exceeds the number of bytes of entropy available via this API (${MAX_RANDOM_BYTES})`,
        "QuotaExceededError",
      );
    }
    const bytes = new Uint8Array(
      TypedArrayPrototypeGetBuffer(typedArray),
      TypedArrayPrototypeGetByteOffset(typedArray),
      byteLength,
    );
    op_crypto_get_random_values(bytes);
    return typedArray;
  }

  randomUUID() {
    webidl.assertBranded(this, CryptoPrototype);
    return op_crypto_random_uuid();
  }

  [SymbolFor("Deno.privateCustomInspect")](inspect, inspectOptions) {
    return `${this.constructor.name} ${inspect({}, inspectOptions)}`;
  }
}
const CryptoPrototype = Crypto.prototype;
webidl.configureInterface(Crypto);

const crypto = new Crypto(illegalConstructorKey);

export { Crypto, crypto };
