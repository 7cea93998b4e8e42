/**
 * A client of the functions-host HTTP API: invoke functions, deploy them, list and manage them,
 * queue asynchronous calls and fetch their results, and follow their logs.
 *
 * It uses only the web platform (`fetch`, `Request`, `Response`, `Headers`, `URL`, streams,
 * `AbortSignal`), so it runs in Node 20+, Deno, browsers and inside a functions-host function.
 *
 * ```ts
 * import { FunctionClient, FunctionError } from 'functions-host-client'
 * const client = new FunctionClient({ baseUrl: 'http://127.0.0.1:8787', apiKey: process.env.FUNCTIONS_API_KEY })
 * const result = await client.invoke('my-function', { name: 'World' })
 * console.log(result.data) // { message: 'Hello, World!' }
 * ```
 *
 * @module
 */

/** A `fetch` implementation: the global one, or one of your own (tests, proxies, embedding). */
export type Fetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** How a {@link FunctionClient} reaches its server. */
export interface FunctionClientOptions {
  /** The server's URL, e.g. `http://127.0.0.1:8787` (a path prefix, as behind a proxy, is kept). */
  baseUrl: string | URL;
  /**
   * An API key, sent as `Authorization: Bearer KEY` with every request. Needed for `/api` when
   * the server has keys, and for invoking functions deployed with `public: false`. An undefined
   * or empty key sends no header.
   */
  apiKey?: string | undefined;
  /** The `fetch` to send requests with (default: `globalThis.fetch`, looked up at each request). */
  fetch?: Fetch | undefined;
}

/** Options every request takes. */
export interface RequestOptions {
  /** Aborts the request; the method then rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
}

/** A request to pass to {@link FunctionClient.invoke}: a `Request`, or an object shaped like one. */
export interface RequestLike {
  /** Its URL: only the path and query are used, appended after `/fn/{name}`. Relative URLs are fine. */
  url: string;
  /** Its HTTP method. */
  method: string;
  /** Its headers. */
  headers?: HeadersInit | undefined;
  /** Its body (a `ReadableStream` is read whole before sending). */
  body?: BodyInit | null | undefined;
  /** Aborts it. */
  signal?: AbortSignal | undefined;
}

/** Options of {@link FunctionClient.invoke}. */
export interface InvokeOptions extends RequestOptions {
  /** Headers to send, over those of the request and the API key's `Authorization`. */
  headers?: HeadersInit | undefined;
  /** The HTTP method (default: `POST` for an event, the request's own for a request). */
  method?: string | undefined;
  /**
   * The path and query after `/fn/{name}` that the function sees as its URL (default: `/` for
   * an event, the request URL's path and query for a request).
   */
  path?: string | undefined;
  /**
   * Send `input` as the JSON event even if it looks like a request (an object whose `url` and
   * `method` are both strings).
   */
  asEvent?: boolean | undefined;
}

/** A function's response, whatever its status. */
export interface InvokeResult<T = unknown> {
  /**
   * The body: parsed JSON when the response's `Content-Type` is JSON (`application/json` or
   * `*+json`; `null` when such a body is empty), otherwise the text (`''` when empty).
   */
  data: T;
  /** The HTTP status the function answered. */
  status: number;
  /** The response's headers (a `Headers`: case-insensitive `get`, repeated values kept). */
  headers: Headers;
}

/** Limits of a function; those left out are the server's defaults. */
export interface FunctionLimits {
  /** CPU time per invocation, in milliseconds (default 1,000). */
  cpuMs?: number | undefined;
  /** Wall-clock time per invocation, in milliseconds (default 30,000). */
  wallClockMs?: number | undefined;
  /** Memory, in MiB (default 128). */
  memoryMb?: number | undefined;
  /** Invocations running at once; more wait in a FIFO queue (default 10). */
  concurrency?: number | undefined;
  /** Any other limit the server knows, by its server-side (snake_case) name. */
  [limit: string]: number | undefined;
}

/** A binding: the function a stub at `env.NAME` reaches, by name or as `{ function: name }`. */
export type Binding = string | { function: string };

/** Options of {@link FunctionClient.deploy}. */
export interface DeployOptions extends RequestOptions {
  /** The function's name. */
  id: string;
  /**
   * `javascript`, `typescript`, `python` or `wasm` (or an alias: `js`, `ts`, `tsx`, `jsx`,
   * `mjs`, `py`, ...). Default: from the entry's extension.
   */
  language?: string | undefined;
  /**
   * The entry file (default: the only file; for one source string, `index.js`, `index.ts` or
   * `main.py` by language). Python may name a function: `main.py:hello` or `hello`.
   */
  entry?: string | undefined;
  /** Environment variables the function gets in `env`. */
  env?: Record<string, string> | undefined;
  /** Functions it may call, each under a binding name: `{ MATH: 'math' }`. */
  bindings?: Record<string, Binding> | undefined;
  /** Its limits. */
  limits?: FunctionLimits | undefined;
  /** Hosts (`host` or `host:port`) its `fetch` may reach. */
  allowNet?: string[] | undefined;
  /** `invocation` (a fresh isolate each time, the default) or `function` (warm isolates). */
  isolation?: 'invocation' | 'function' | (string & {}) | undefined;
  /** Whether invoking it needs no API key (default true). */
  public?: boolean | undefined;
  /** Python: packages to install (requirements.txt lines). */
  requirements?: string[] | undefined;
  /** WebAssembly: `command` (default) or `wagi` (stdout starts with CGI headers). */
  executor?: 'command' | 'wagi' | (string & {}) | undefined;
}

/** What {@link FunctionClient.deploy} takes: one source file, files by path, or a `.wasm` binary. */
export type DeploySource = string | Record<string, string> | Uint8Array | ArrayBuffer;

/** A function, as the server describes it (field names in camelCase). */
export interface FunctionInfo {
  /** Its name. */
  name: string;
  /** Its current version, from 1. */
  version: number;
  /** `javascript`, `typescript`, `wasm` or `python`. */
  language: string;
  /** Its entry file (Python: maybe with `:function`). */
  entry: string;
  /** `invocation` or `function`. */
  isolation: string;
  /** Where it is invoked: `{baseUrl}/fn/{name}/`. */
  url: string;
  /** Its key-less, unguessable call address (keep it secret). */
  callUrl: string;
  /** Whether invoking it needs no API key. */
  public: boolean;
  /** The fingerprint of the key that owns it, if the server has keys. */
  owner?: string | null;
  /** The limits it was deployed with (those set). */
  limits: FunctionLimits;
  /** When it was first deployed (RFC 3339). */
  createdAt: string;
  /** When its current version was deployed (RFC 3339). */
  deployedAt: string;
  /** Other fields the server answers. */
  [field: string]: unknown;
}

/** A function in detail ({@link FunctionClient.get}): its description plus its code and grants. */
export interface FunctionDetails extends FunctionInfo {
  /** The entry file's source (not for WebAssembly). */
  source?: string;
  /** Its files' paths. */
  files: string[];
  /** The hosts its `fetch` may reach. */
  allowNet: string[];
  /** Its bindings, `{ NAME: { function: target } }`. */
  bindings: Record<string, { function: string }>;
  /** The names of its env variables (not their values). */
  env: string[];
}

/** A new call address ({@link FunctionClient.rotateToken}). */
export interface RotatedToken {
  /** The function's name. */
  name: string;
  /** Its new call address; the old one stops working. */
  callUrl: string;
}

/** A queued asynchronous call ({@link FunctionClient.call}). */
export interface QueuedCall {
  /** The id to fetch its result with. */
  callId: string;
}

/** Options of {@link FunctionClient.result}. */
export interface ResultOptions extends RequestOptions {
  /** Seconds to wait for the call to end (at most 300 on the server; default 0: ask once). */
  wait?: number | undefined;
}

/** A call that has not ended yet. */
export interface PendingCall {
  /** `pending` (queued) or `running`. */
  state: 'pending' | 'running';
  /** The call's id. */
  callId: string;
}

/** A call that ended with a response (whatever its status). */
export interface FinishedCall<T = unknown> extends InvokeResult<T> {
  /** Always `finished`. */
  state: 'finished';
  /** The call's id. */
  callId: string;
}

/** What {@link FunctionClient.result} answers. */
export type CallResult<T = unknown> = PendingCall | FinishedCall<T>;

/** Options of {@link FunctionClient.logs}. */
export interface LogsOptions extends RequestOptions {
  /** Keep waiting for new lines once the stored ones are read, until `signal` aborts or the loop breaks. */
  follow?: boolean | undefined;
  /** Start after the line with this id (default 0: from the oldest stored line). */
  after?: number | undefined;
  /** Lines per request (default 1,000; the server allows up to 10,000). */
  limit?: number | undefined;
  /** With `follow`, the seconds each request waits on the server for a new line (default 30). */
  wait?: number | undefined;
}

/** One line of a function's logs. */
export interface LogLine {
  /** Its id, increasing: pass it as `after` to read on from it. */
  id: number;
  /** When it was logged (RFC 3339, UTC). */
  timestamp: string;
  /** `log`, `info`, `warn`, `error`, `debug`, ... */
  level: string;
  /** `function` for the function's own output, `host` for lifecycle lines (`CALL`, `RUNNING`, ...). */
  source: string;
  /** The text. */
  message: string;
  /** Other fields the server answers. */
  [field: string]: unknown;
}

/** What a {@link FunctionError} carries besides its message. */
export interface FunctionErrorDetails {
  /** The machine-readable code: `not_found`, `compile_error`, `function_error`, `time_limit`, `network_error`, `redirect` (a browser hid a redirect), ... */
  code: string;
  /** The HTTP status (0 when the server could not be reached). */
  status: number;
  /** The file of a compile error. */
  file?: string | undefined;
  /** The line of a compile error (from 1). */
  line?: number | undefined;
  /** The column of a compile error. */
  column?: number | undefined;
  /** The function's stack when it threw, mapped to its original source. */
  remoteStack?: string | undefined;
  /** Seconds to wait before trying again (from `Retry-After`), for a 429. */
  retryAfter?: number | undefined;
  /** The asynchronous call it concerns, for {@link FunctionClient.result}. */
  callId?: string | undefined;
  /** The whole error object the server answered (`{code, message, ...}`). */
  details?: Record<string, unknown> | undefined;
  /** The underlying error (a network failure's). */
  cause?: unknown;
}

/**
 * An error the server (not the function) answered, or a failure to reach it (`code`
 * `network_error`, `status` 0, the original error as `cause`).
 */
export class FunctionError extends Error {
  /** The machine-readable code, e.g. `not_found` or `time_limit`. */
  readonly code: string;
  /** The HTTP status, or 0 when the server could not be reached. */
  readonly status: number;
  /** The file of a compile error. */
  readonly file?: string;
  /** The line of a compile error. */
  readonly line?: number;
  /** The column of a compile error. */
  readonly column?: number;
  /** The function's stack when it threw (500 `function_error`). */
  readonly remoteStack?: string;
  /** Seconds to wait before trying again, when the server said (`Retry-After`). */
  readonly retryAfter?: number;
  /** The asynchronous call it concerns, for errors from {@link FunctionClient.result}. */
  readonly callId?: string;
  /** The whole error object the server answered. */
  readonly details: Record<string, unknown>;

  /** An error saying `message`, with its code, status and the rest. */
  constructor(message: string, details: FunctionErrorDetails) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'FunctionError';
    this.code = details.code;
    this.status = details.status;
    if (details.file !== undefined) this.file = details.file;
    if (details.line !== undefined) this.line = details.line;
    if (details.column !== undefined) this.column = details.column;
    if (details.remoteStack !== undefined) this.remoteStack = details.remoteStack;
    if (details.retryAfter !== undefined) this.retryAfter = details.retryAfter;
    if (details.callId !== undefined) this.callId = details.callId;
    this.details = details.details ?? {};
  }
}

/** The header the server marks its own error responses with (its value is the error's code). */
const HOST_ERROR_HEADER = 'x-functions-host-error';

/** The most log lines the server answers in one page. */
const MAX_LOG_PAGE = 10_000;

/** Server-side names of the limits. */
const LIMIT_NAMES: Record<string, string> = {
  cpuMs: 'cpu_ms',
  wallClockMs: 'wall_clock_ms',
  memoryMb: 'memory_mb',
  concurrency: 'concurrency',
};

/** The file a single source string is deployed as, by language alias. */
const SOURCE_FILES: Record<string, string> = {
  javascript: 'index.js',
  js: 'index.js',
  mjs: 'index.mjs',
  jsx: 'index.jsx',
  typescript: 'index.ts',
  ts: 'index.ts',
  mts: 'index.mts',
  tsx: 'index.tsx',
  python: 'main.py',
  py: 'main.py',
};

/**
 * A client of one functions-host server.
 *
 * Management methods (everything but {@link invoke}) throw a {@link FunctionError} for any
 * answer other than success. {@link invoke} returns the function's response whatever its
 * status, and throws only for errors the host itself answered (unknown function, limits, a
 * function that threw, ...) and for network failures.
 */
export class FunctionClient {
  /** The server's URL, without a trailing `/`. */
  readonly baseUrl: string;
  readonly #apiKey: string | undefined;
  readonly #fetch: Fetch | undefined;

  /** A client of the server at `options.baseUrl`. */
  constructor(options: FunctionClientOptions) {
    if (options === null || typeof options !== 'object' || options.baseUrl === undefined) {
      throw new TypeError('FunctionClient needs { baseUrl }');
    }
    const base = new URL(String(options.baseUrl));
    this.baseUrl = (base.origin + base.pathname).replace(/\/+$/, '');
    this.#apiKey = options.apiKey ? options.apiKey : undefined;
    this.#fetch = options.fetch;
  }

  /**
   * Invokes function `name` and answers its response, whatever its status.
   *
   * A plain `input` is the event: POSTed as JSON to `/fn/{name}/` (no body when it is
   * undefined). A `Request` (or an object with string `url` and `method`, and optionally
   * `headers` and `body`) is sent with its method, headers and body, its URL's path and query
   * appended after `/fn/{name}`.
   *
   * @throws {FunctionError} when the host answered an error of its own (marked by the
   * `X-Functions-Host-Error` header: unknown function, payload too large, queue full, the
   * function threw, time limit, ...), or the server could not be reached.
   */
  async invoke<T = unknown>(
    name: string,
    input?: unknown,
    options: InvokeOptions = {},
  ): Promise<InvokeResult<T>> {
    const headers = new Headers();
    let method = 'POST';
    let path = '/';
    let body: BodyInit | undefined;
    let signal = options.signal;
    if (!options.asEvent && isRequestLike(input)) {
      const url = new URL(input.url, 'http://localhost/');
      path = url.pathname + url.search;
      method = input.method;
      new Headers(input.headers ?? undefined).forEach((value, key) => headers.set(key, value));
      body = await requestBody(input);
      signal ??= input.signal ?? undefined;
    } else if (input !== undefined) {
      const json = JSON.stringify(input);
      if (json !== undefined) {
        body = json;
        headers.set('content-type', 'application/json');
      }
    }
    if (options.method !== undefined) method = options.method;
    if (options.path !== undefined) path = options.path.startsWith('/') ? options.path : `/${options.path}`;
    new Headers(options.headers ?? undefined).forEach((value, key) => headers.set(key, value));
    if (body !== undefined && /^(GET|HEAD)$/i.test(method)) {
      throw new TypeError(`a ${method.toUpperCase()} invocation cannot carry a body: pass no event, or another method`);
    }
    const response = await this.#send(method, `/fn/${segment(name)}${path}`, { headers, body, signal });
    if (response.headers.has(HOST_ERROR_HEADER)) {
      throw await errorOf(response, signal);
    }
    const data = (await readData(response, signal)) as T;
    return { data, status: response.status, headers: response.headers };
  }

  /**
   * Deploys a new version of function `options.id` and answers the server's description of it.
   *
   * `source` is one source file (a string; its file name comes from `entry` or the language:
   * `index.js`, `index.ts`, `main.py`, ...), files by path (`{ 'index.ts': ..., 'lib.ts': ... }`),
   * or a WebAssembly binary (a `Uint8Array` or `ArrayBuffer`).
   *
   * @throws {FunctionError} a 400 `compile_error` (with `file`, `line` and `column`) for code
   * that does not compile, 400 `bad_request` for a bad name or manifest, 413 for code over the
   * deploy limit, 401/404 for a missing key or a function another key owns.
   */
  async deploy(source: DeploySource, options: DeployOptions): Promise<FunctionInfo> {
    if (options === null || typeof options !== 'object' || typeof options.id !== 'string') {
      throw new TypeError('deploy needs { id } naming the function');
    }
    const path = `/api/functions/${segment(options.id)}`;
    const signal = options.signal;
    const binary = bytesOf(source);
    let files: Record<string, string>;
    let language = options.language;
    if (binary !== undefined) {
      const manifestOnly =
        options.env !== undefined ||
        options.bindings !== undefined ||
        options.limits !== undefined ||
        options.allowNet !== undefined ||
        options.public !== undefined ||
        options.requirements !== undefined;
      if (!manifestOnly) {
        // The binary as it is, its settings in the query.
        const query = new URLSearchParams();
        if (options.entry !== undefined) query.set('entry', options.entry);
        if (options.isolation !== undefined) query.set('isolation', options.isolation);
        if (options.executor !== undefined) query.set('executor', options.executor);
        if (language !== undefined) query.set('lang', language);
        const search = query.toString() === '' ? '' : `?${query}`;
        const headers = new Headers({ 'content-type': 'application/wasm' });
        const reply = await this.#json('PUT', path + search, { headers, body: binary, signal });
        return functionInfo(reply);
      }
      // A manifest carries a binary in base64.
      files = { [options.entry ?? 'main.wasm']: base64(binary) };
      language ??= 'wasm';
    } else if (typeof source === 'string') {
      files = { [sourceFile(options.language, options.entry)]: source };
    } else if (source !== null && typeof source === 'object') {
      files = source as Record<string, string>;
    } else {
      throw new TypeError('deploy takes source code (a string), files ({ path: source }) or a .wasm binary');
    }
    const manifest = {
      language,
      entry: options.entry,
      files,
      env: options.env,
      bindings: options.bindings === undefined ? undefined : bindingsOf(options.bindings),
      limits: options.limits === undefined ? undefined : limitsOf(options.limits),
      allow_net: options.allowNet,
      isolation: options.isolation,
      public: options.public,
      requirements: options.requirements,
      executor: options.executor,
    };
    const headers = new Headers({ 'content-type': 'application/json' });
    const reply = await this.#json('PUT', path, { headers, body: JSON.stringify(manifest), signal });
    return functionInfo(reply);
  }

  /** Every function (the API key's own, or all for an admin key or a server without keys). */
  async list(options: RequestOptions = {}): Promise<FunctionInfo[]> {
    const reply = (await this.#json('GET', '/api/functions', options)) as { functions?: unknown[] };
    return (reply.functions ?? []).map(functionInfo);
  }

  /** Function `id` in detail: its description, entry source, files, grants and env names. */
  async get(id: string, options: RequestOptions = {}): Promise<FunctionDetails> {
    return functionInfo(await this.#json('GET', `/api/functions/${segment(id)}`, options)) as FunctionDetails;
  }

  /** Deletes function `id`, its versions and its logs. */
  async delete(id: string, options: RequestOptions = {}): Promise<void> {
    await this.#json('DELETE', `/api/functions/${segment(id)}`, options);
  }

  /** Gives function `name` a new call address (its key-less URL); the old one stops working. */
  async rotateToken(name: string, options: RequestOptions = {}): Promise<RotatedToken> {
    const reply = (await this.#json('POST', `/api/functions/${segment(name)}/token`, options)) as {
      name: string;
      call_url: string;
    };
    return { name: reply.name, callUrl: reply.call_url };
  }

  /**
   * Queues an asynchronous call of function `name` with `payload` as its JSON event (none when
   * undefined). The server answers once the call is stored; fetch its outcome with
   * {@link result}.
   *
   * @throws {FunctionError} 404 for an unknown function, 429 `queue_full` when its queue is
   * full, 413 for a payload over 5 MB.
   */
  async call(name: string, payload?: unknown, options: RequestOptions = {}): Promise<QueuedCall> {
    const headers = new Headers();
    let body: string | undefined;
    if (payload !== undefined) {
      body = JSON.stringify(payload);
      headers.set('content-type', 'application/json');
    }
    const reply = (await this.#json('POST', `/api/functions/${segment(name)}/calls`, {
      headers,
      body,
      signal: options.signal,
    })) as { call_id: string };
    return { callId: reply.call_id };
  }

  /**
   * The outcome of call `callId`, waiting up to `options.wait` seconds for it: `{ state:
   * 'pending' | 'running' }` while it has not ended, else `{ state: 'finished', data, status,
   * headers }` with the function's response (whatever its status). The server forgets a
   * result once it has answered it.
   *
   * @throws {FunctionError} for a call that failed (the function threw, ran out of time, ...;
   * `callId` set), 404 for an unknown or already fetched call, 410 for a result rotated out of
   * the function's result cache.
   */
  async result<T = unknown>(callId: string, options: ResultOptions = {}): Promise<CallResult<T>> {
    const { wait, signal } = options;
    const query = wait === undefined ? '' : `?wait=${encodeURIComponent(String(wait))}`;
    const response = await this.#send('GET', `/api/calls/${segment(callId)}${query}`, { signal });
    const callState = response.headers.get('x-call-state');
    if (response.status === 202) {
      const body = (await readData(response, signal)) as { state?: string } | null;
      const state = body?.state ?? callState;
      return { state: state === 'running' ? 'running' : 'pending', callId };
    }
    if (callState === 'failed' || (callState !== 'finished' && !response.ok)) {
      throw await errorOf(response, signal, callId);
    }
    const data = (await readData(response, signal)) as T;
    return { state: 'finished', callId, data, status: response.status, headers: response.headers };
  }

  /**
   * Function `name`'s log lines, oldest first, as an async iterator: it pages through the
   * stored lines, then ends, or with `follow` keeps asking the server for new ones (each
   * request waiting up to `wait` seconds there) until `signal` aborts (the iteration then ends
   * quietly) or the loop breaks.
   *
   * ```ts
   * for await (const line of client.logs('hello', { follow: true, signal })) console.log(line.message)
   * ```
   */
  logs(name: string, options: LogsOptions = {}): AsyncGenerator<LogLine, void, undefined> {
    return this.#logs(name, options);
  }

  async *#logs(name: string, options: LogsOptions): AsyncGenerator<LogLine, void, undefined> {
    const { follow = false, signal } = options;
    // (The server answers at most 10,000 lines a page.)
    const limit = Math.min(MAX_LOG_PAGE, Math.max(1, Math.floor(options.limit ?? 1000)));
    const wait = Math.max(0, options.wait ?? 30);
    let after = options.after ?? 0;
    // Whether the stored lines have been read: then each request of a follower waits.
    let caughtUp = false;
    for (;;) {
      if (signal?.aborted) return;
      const waiting = follow && caughtUp;
      const query = `after=${after}&limit=${limit}${waiting ? `&wait=${wait}` : ''}`;
      const asked = Date.now();
      let page: { logs?: LogLine[] };
      try {
        page = (await this.#json('GET', `/api/functions/${segment(name)}/logs?${query}`, { signal })) as {
          logs?: LogLine[];
        };
      } catch (err) {
        if (signal?.aborted) return;
        throw err;
      }
      const lines = page.logs ?? [];
      for (const line of lines) {
        if (typeof line.id === 'number' && line.id > after) after = line.id;
        yield line;
      }
      if (lines.length >= limit) continue;
      if (!follow) return;
      if (waiting && lines.length === 0 && Date.now() - asked < 500) {
        // A server that does not wait (or a short `wait`) answers at once: ask again in a
        // second, not in a loop.
        if (!(await sleep(1000, signal))) return;
      }
      caughtUp = true;
    }
  }

  /** Sends a request to the server; a network failure is a `network_error`. */
  async #send(
    method: string,
    path: string,
    init: { headers?: Headers | undefined; body?: BodyInit | undefined; signal?: AbortSignal | undefined },
  ): Promise<Response> {
    const headers = new Headers();
    if (this.#apiKey !== undefined) headers.set('authorization', `Bearer ${this.#apiKey}`);
    init.headers?.forEach((value, key) => headers.set(key, value));
    // Never followed: the API does not redirect, and a function's redirect is its answer (followed,
    // it would take the key wherever the function pointed, another function's /api included).
    const request: RequestInit = { method, headers, redirect: 'manual' };
    if (init.body !== undefined) request.body = init.body;
    if (init.signal !== undefined) request.signal = init.signal;
    const url = this.baseUrl + path;
    let response: Response;
    try {
      response = this.#fetch === undefined ? await globalThis.fetch(url, request) : await this.#fetch(url, request);
    } catch (err) {
      if (init.signal?.aborted) throw init.signal.reason ?? err;
      throw networkError(this.baseUrl, err);
    }
    if (response.type === 'opaqueredirect') {
      // A browser hides a redirect it does not follow: status 0, no headers.
      throw new FunctionError(`${method} ${path} answered a redirect, which a browser does not let the page read`, {
        code: 'redirect',
        status: 0,
      });
    }
    return response;
  }

  /** Sends a request and answers its JSON body; any answer but a 2xx is a {@link FunctionError}. */
  async #json(
    method: string,
    path: string,
    init: { headers?: Headers | undefined; body?: BodyInit | undefined; signal?: AbortSignal | undefined },
  ): Promise<unknown> {
    const response = await this.#send(method, path, init);
    if (!response.ok) throw await errorOf(response, init.signal);
    const text = await readText(response, init.signal);
    if (text === '') return null;
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new FunctionError(`the server's answer to ${method} ${path} is not JSON: ${text.slice(0, 200)}`, {
        code: 'invalid_response',
        status: response.status,
        cause: err,
      });
    }
  }
}

/** Whether `value` is to be sent as a request rather than as a JSON event. */
function isRequestLike(value: unknown): value is RequestLike {
  if (typeof Request !== 'undefined' && value instanceof Request) return true;
  if (value === null || typeof value !== 'object') return false;
  const candidate = value as { url?: unknown; method?: unknown };
  return typeof candidate.url === 'string' && typeof candidate.method === 'string';
}

/** The body to send for a request: a stream is read whole (a function's payload is at most 5 MB). */
async function requestBody(input: RequestLike): Promise<BodyInit | undefined> {
  if (typeof Request !== 'undefined' && input instanceof Request) {
    return input.body === null ? undefined : new Uint8Array(await input.arrayBuffer());
  }
  const body = input.body;
  if (body === undefined || body === null) return undefined;
  if (typeof ReadableStream !== 'undefined' && body instanceof ReadableStream) {
    return new Uint8Array(await new Response(body).arrayBuffer());
  }
  return body;
}

/** A name as one path segment. */
function segment(name: string): string {
  const encoded = encodeURIComponent(String(name));
  // A URL parser resolves these away, escaped or not (`get('.')` would list).
  if (encoded === '.' || encoded === '..') throw new TypeError(`${JSON.stringify(name)} is not a name`);
  return encoded;
}

/** The bytes of a binary source, or undefined for text and files. */
function bytesOf(source: unknown): Uint8Array<ArrayBuffer> | undefined {
  if (ArrayBuffer.isView(source)) {
    const view = new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
    // (A view of a SharedArrayBuffer is copied: fetch sends ArrayBuffers only.)
    return view.buffer instanceof ArrayBuffer ? (view as Uint8Array<ArrayBuffer>) : new Uint8Array(view);
  }
  if (source instanceof ArrayBuffer || Object.prototype.toString.call(source) === '[object ArrayBuffer]') {
    return new Uint8Array(source as ArrayBuffer);
  }
  return undefined;
}

/** The file name one source string is deployed as. */
function sourceFile(language: string | undefined, entry: string | undefined): string {
  const file = entry?.split(':')[0];
  if (file !== undefined && /\.[A-Za-z0-9]+$/.test(file)) return file;
  return SOURCE_FILES[(language ?? 'javascript').toLowerCase()] ?? 'index.js';
}

/** Bindings in the manifest's shape: `{ NAME: { function: target } }`. */
function bindingsOf(bindings: Record<string, Binding>): Record<string, { function: string }> {
  const out: Record<string, { function: string }> = {};
  for (const [name, target] of Object.entries(bindings)) {
    out[name] = typeof target === 'string' ? { function: target } : target;
  }
  return out;
}

/** Limits by their server-side names. */
function limitsOf(limits: FunctionLimits): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, value] of Object.entries(limits)) {
    if (value !== undefined) out[LIMIT_NAMES[name] ?? name] = value;
  }
  return out;
}

/** `snake_case` to `camelCase`. */
function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());
}

/** An object with its own keys in camelCase (values untouched). */
function camelKeys(value: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (value === null || typeof value !== 'object') return out;
  for (const [key, field] of Object.entries(value)) out[camel(key)] = field;
  return out;
}

/** A function's description as the server answers it, with camelCase names. */
function functionInfo(reply: unknown): FunctionInfo {
  const info = camelKeys(reply);
  // Nested objects of the server's own (not user-named keys such as env or bindings).
  for (const key of ['limits', 'wasm', 'python']) {
    if (info[key] !== null && typeof info[key] === 'object') info[key] = camelKeys(info[key]);
  }
  return info as FunctionInfo;
}

/** The text of a response body; a failure to read it is a `network_error`. */
async function readText(response: Response, signal: AbortSignal | undefined): Promise<string> {
  try {
    return await response.text();
  } catch (err) {
    if (signal?.aborted) throw signal.reason ?? err;
    throw networkError(response.url, err);
  }
}

/** Whether a `Content-Type` is JSON. */
function isJson(contentType: string | null): boolean {
  if (contentType === null) return false;
  const type = contentType.split(';')[0]!.trim().toLowerCase();
  return type === 'application/json' || type.endsWith('+json');
}

/** A response body as {@link InvokeResult.data}: JSON when it says so, else text. */
async function readData(response: Response, signal: AbortSignal | undefined): Promise<unknown> {
  const text = await readText(response, signal);
  if (!isJson(response.headers.get('content-type'))) return text;
  if (text.trim() === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    // A body that says JSON and is not: the text, as it is.
    return text;
  }
}

/** The {@link FunctionError} an error response stands for. */
async function errorOf(response: Response, signal: AbortSignal | undefined, callId?: string): Promise<FunctionError> {
  const text = await readText(response, signal);
  let error: Record<string, unknown> = {};
  try {
    const body: unknown = JSON.parse(text);
    const inner = body !== null && typeof body === 'object' ? (body as { error?: unknown }).error : undefined;
    if (inner !== null && typeof inner === 'object') error = inner as Record<string, unknown>;
  } catch {
    // Not JSON (a proxy's page, say): the text is the message.
  }
  const string = (value: unknown) => (typeof value === 'string' ? value : undefined);
  const number = (value: unknown) => (typeof value === 'number' ? value : undefined);
  const code =
    response.headers.get(HOST_ERROR_HEADER) || string(error.code) || `http_${response.status}`;
  const message =
    string(error.message) || text.trim().slice(0, 1000) || `${response.status} ${response.statusText}`.trim();
  return new FunctionError(message, {
    code,
    status: response.status,
    file: string(error.file),
    line: number(error.line),
    column: number(error.column),
    remoteStack: string(error.stack),
    retryAfter: retryAfterOf(response.headers.get('retry-after')),
    callId,
    details: error,
  });
}

/** Seconds from a `Retry-After` header (a number of seconds or an HTTP date). */
function retryAfterOf(value: string | null): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/** The error for a server that could not be reached at `url`. */
function networkError(url: string, cause: unknown): FunctionError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new FunctionError(`cannot reach the server at ${url}: ${reason}`, { code: 'network_error', status: 0, cause });
}

/** The base64 text of `bytes`. */
function base64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Waits `ms` milliseconds: true, or false as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const done = (slept: boolean) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', aborted);
      resolve(slept);
    };
    const aborted = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal?.addEventListener('abort', aborted, { once: true });
  });
}
