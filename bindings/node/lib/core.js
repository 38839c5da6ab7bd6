// The host-neutral half of the Node bindings: loads the plugin's C ABI with koffi (a private,
// unlinked copy per generation), runs streams and rebuilds each event's `partial` message,
// serves discovery and embeddings, and swaps builds under load. It imports no model library:
// the pi-ai binding (../index.js) and the OpenClaw provider plugin (bindings/openclaw) hand it
// their own event-stream factory and streaming-JSON parser, because an OpenClaw host reads
// @openclaw/ai's streams and a pi-ai host reads pi-ai's.
//
// Events reach JavaScript through a mailbox (ABI 1.7): every stream of a copy files its events
// into the copy's mailbox, and one bp_mailbox_wait on a koffi worker thread takes everything
// filed at once, so one hop to the main thread carries the events of many streams. No plugin
// thread ever waits for JavaScript. With a 1.5 or 1.6 plugin they come in batched callbacks
// (bp_stream_start_batched): koffi queues each call to the main thread, one hop per stream per
// delivery. Calls that block (free, discover, embed, the mailbox's wait) run through koffi's
// worker threads so the event loop stays free: a delivery thread waiting for the main thread
// must never be waited on by the main thread.

import koffi from "koffi";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const API = "bedrock-converse-stream";
/** How long the events of a copy's streams gather between two takes from its mailbox at most:
 * invisible next to a model's 10–20 ms between tokens. */
const GATHER_MS = 2;
const ABI_MAJOR = 1;
const MIN_MINOR = 5;

koffi.proto("int32_t bp_node_events_fn(intptr_t user, const char *ndjson, size_t len, size_t count)");

/** Reads and frees a string the plugin handed out. */
function take(lib, ptr) {
  if (!ptr) return null;
  const text = koffi.decode(ptr, "char", -1);
  lib.string_free(ptr);
  return text;
}

function callAsync(fn, ...args) {
  return new Promise((resolve, reject) => fn.async(...args, (err, res) => (err ? reject(err) : resolve(res))));
}

let nextLoad = 0;

/**
 * Throws unless the private copy at `copy` is the one whole build at `path`: the file did not
 * change while it was copied (a deploy still writing it), and it matches `<path>.sha256` (what
 * `make ship` / `make install` write) when there is one, or must be one (`requireDigest`).
 */
function checkBuild(path, before, copy, requireDigest) {
  const after = statSync(path);
  const same = ["ino", "size", "mtimeMs", "ctimeMs"].every((k) => before[k] === after[k]);
  if (!same) throw new Error(`${path} changed while it was copied (still being written?); not loaded`);
  const digestFile = `${path}.sha256`;
  if (!existsSync(digestFile)) {
    if (requireDigest) throw new Error(`${path}: no digest beside it (${digestFile}); deploy with \`make install\` or write one with sha256sum`);
    return;
  }
  const want = readFileSync(digestFile, "utf8").trim().split(/\s+/)[0].toLowerCase();
  const got = createHash("sha256").update(readFileSync(copy)).digest("hex");
  if (want !== got) throw new Error(`${path}: its SHA-256 ${got.slice(0, 12)}… is not the ${want.slice(0, 12)}… of ${digestFile} (a build still being written, or a mix of two builds); not loaded`);
}

/** One loaded copy of the plugin with one provider: a generation of a PluginLibrary. */
class Copy {
  constructor(path, config, onEvents, requireDigest = false) {
    // dlopen returns the image already mapped for a path: a private copy keeps generations apart.
    // It is unlinked as soon as it is mapped, so nothing is left on disk whatever happens to the
    // process (an unstripped build is 100+ MB, and hosts such as OpenClaw load a module twice).
    const dir = mkdtempSync(join(tmpdir(), "bedrock-plugin-node-"));
    this.file = join(dir, `plugin-${process.pid}-${nextLoad++}.so`);
    let lib;
    try {
      const before = statSync(path);
      copyFileSync(path, this.file);
      checkBuild(path, before, this.file, requireDigest);
      lib = koffi.load(this.file);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    this.lib = {
      abi_version: lib.func("uint32_t bp_abi_version(void)"),
      plugin_info: lib.func("const char *bp_plugin_info(void)"),
      provider_new: lib.func("int32_t bp_provider_new(const char *config, _Out_ void **out, _Out_ void **err)"),
      stream_start: lib.func("int32_t bp_stream_start_batched(void *p, const char *req, bp_node_events_fn *cb, intptr_t user, _Out_ void **out, _Out_ void **err)"),
      stream_cancel: lib.func("void bp_stream_cancel(void *s)"),
      stream_release: lib.func("void bp_stream_release(void *s)"),
      discover: lib.func("int32_t bp_discover(void *p, const char *options, _Out_ void **out, _Out_ void **err)"),
      embed: lib.func("int32_t bp_embed(void *p, const char *req, _Out_ void **out, _Out_ void **err)"),
      provider_free: lib.func("int32_t bp_provider_free(void *p, uint32_t drain_ms)"),
      string_free: lib.func("void bp_string_free(void *s)"),
    };
    this.library = lib;
    const version = this.lib.abi_version();
    if (version >>> 16 !== ABI_MAJOR || (version & 0xffff) < MIN_MINOR) {
      this.unload();
      throw new Error(`${path}: plugin ABI ${version >>> 16}.${version & 0xffff}; this binding needs ${ABI_MAJOR}.${MIN_MINOR} or a later 1.x`);
    }
    this.info = JSON.parse(this.lib.plugin_info());
    this.onEvents = onEvents;
    this.registered = null;
    const out = [null], err = [null];
    if (this.lib.provider_new(JSON.stringify(config), out, err) !== 0) {
      const message = take(this.lib, err[0]);
      this.unload();
      throw new Error(`bedrock-plugin: ${message}`);
    }
    this.provider = out[0];
    this.mailbox = null;
    if ((version & 0xffff) >= 7) {
      Object.assign(this.lib, {
        mailbox_new: lib.func("int32_t bp_mailbox_new(uint32_t capacity, _Out_ void **out)"),
        stream_start_mailbox: lib.func("int32_t bp_stream_start_mailbox(void *p, const char *req, void *mailbox, uint64_t tag, _Out_ void **out, _Out_ void **err)"),
        mailbox_wait: lib.func("int32_t bp_mailbox_wait(void *mailbox, uint32_t timeout_ms, _Out_ const char **ndjson, _Out_ size_t *len, _Out_ size_t *count)"),
        mailbox_close: lib.func("void bp_mailbox_close(void *mailbox)"),
        mailbox_free: lib.func("void bp_mailbox_free(void *mailbox)"),
      });
      const box = [null];
      if (this.lib.mailbox_new(0, box) === 0) this.mailbox = box[0];
    }
    this.pumping = false;
    this.open = 0; // streams not yet ended
    this.calls = 0; // blocking calls (discover, embed) not yet returned
    this.waiters = []; // [test, resolve]: resolved by settle() once test() holds
  }

  /**
   * The events callback, registered with koffi on the first stream: a copy that only lists
   * models or embeds (OpenClaw lists them in a worker thread) holds no cross-thread callback in
   * its Node environment, and a freed copy drops it, so environment teardown has nothing of
   * ours to release.
   */
  get callback() {
    return (this.registered ??= koffi.register(this.onEvents, koffi.pointer("bp_node_events_fn")));
  }

  /** Drops the events callback once the plugin can no longer call it. */
  unregister() {
    if (this.registered) koffi.unregister(this.registered);
    this.registered = null;
  }

  /** Counts a blocking call in and out: the copy is not unloaded while one runs. */
  async call(fn, ...args) {
    this.calls += 1;
    try {
      return await callAsync(fn, ...args);
    } finally {
      this.calls -= 1;
      this.settle();
    }
  }

  settle() {
    this.waiters = this.waiters.filter(([test, resolve]) => !(test() && (resolve(), true)));
  }

  #when(test) {
    return test() ? Promise.resolve() : new Promise((resolve) => this.waiters.push([test, resolve]));
  }

  /** Resolves once no stream is open and no call is in flight on this copy. */
  quiet() {
    return this.#when(() => this.open === 0 && this.calls === 0);
  }

  /**
   * Frees the provider (calls in flight are cut short, streams get drainMs), then unloads the
   * copy once every call has returned to JavaScript. On BP_ERR_BUSY a callback has not returned:
   * the plugin pinned itself and may still call back, so the callback stays registered and the
   * copy mapped.
   */
  async close(drainMs) {
    const status = await callAsync(this.lib.provider_free, this.provider, drainMs);
    // Every stream's end is filed by now (or the copy is pinned): the pump takes what is left,
    // then its wait says the box is closed.
    if (this.mailbox) this.lib.mailbox_close(this.mailbox);
    await this.#when(() => this.calls === 0 && !this.pumping);
    if (this.mailbox) this.lib.mailbox_free(this.mailbox);
    this.mailbox = null;
    if (status === 16) {
      this.unload(true);
      return status;
    }
    this.unregister();
    this.unload();
    return status;
  }

  unload(keepMapped = false) {
    if (!keepMapped) this.library.unload();
  }
}

/** What a pi-ai `Model` becomes for the plugin: the model object of a request. */
function pluginModel(model) {
  return {
    id: model.id,
    name: model.name ?? model.id,
    reasoning: Boolean(model.reasoning),
    input: model.input ?? ["text"],
    cost: model.cost ?? { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
    contextWindow: model.contextWindow,
    maxTokens: model.maxTokens,
  };
}

/** A host's stream options, as the plugin's request reads them. pi-ai and OpenClaw pass the same
 * names; OpenClaw's `service_tier` spelling (from `agents.defaults.params`) is read as
 * `serviceTier`. Everything else a host passes (callbacks, its own bookkeeping) stays behind. */
function pluginOptions(options = {}) {
  const out = {};
  for (const key of ["maxTokens", "temperature", "reasoning", "thinkingBudgets", "cacheRetention", "toolChoice", "interleavedThinking", "sessionId", "serviceTier", "maxRetryDelayMs", "guardrailConfig", "holdOutput"]) {
    if (options[key] !== undefined && options[key] !== null) out[key] = options[key];
  }
  if (out.serviceTier === undefined && typeof options.service_tier === "string") out.serviceTier = options.service_tier;
  return out;
}

/** The failure pi-ai expects when a stream cannot start: an error event carrying the message. */
function failedMessage(model, message, code) {
  return {
    role: "assistant", content: [], api: API, provider: model.provider ?? "amazon-bedrock", model: model.id,
    usage: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, totalTokens: 0, cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, total: 0 } },
    stopReason: code === "cancelled" ? "aborted" : "error", errorMessage: message, timestamp: Date.now(),
  };
}

/**
 * One open stream: rebuilds pi-ai's `partial` (the plugin sends only what is new) and pushes
 * each event to the pi-ai stream.
 */
class OpenStream {
  constructor(events, copy, parseStreamingJson) {
    this.parseStreamingJson = parseStreamingJson;
    this.events = events;
    this.copy = copy;
    this.partial = null;
    this.json = new Map();
    this.handle = null;
    this.finished = false;
  }

  apply(event) {
    const p = this.partial;
    switch (event.type) {
      case "start":
        this.partial = event.partial;
        return event;
      case "text_start":
        p.content[event.contentIndex] = { type: "text", text: "" };
        break;
      case "text_delta":
        p.content[event.contentIndex].text += event.delta;
        break;
      case "text_end":
        p.content[event.contentIndex].text = event.content;
        break;
      case "thinking_start":
        p.content[event.contentIndex] = { type: "thinking", thinking: "" };
        break;
      case "thinking_delta":
        p.content[event.contentIndex].thinking += event.delta;
        break;
      case "thinking_end":
        p.content[event.contentIndex].thinking = event.content;
        break;
      case "toolcall_start": {
        p.content[event.contentIndex] = { type: "toolCall", id: event.id, name: event.name, arguments: {} };
        this.json.set(event.contentIndex, "");
        const { id, name, ...rest } = event;
        return { ...rest, partial: p };
      }
      case "toolcall_delta": {
        const text = this.json.get(event.contentIndex) + event.delta;
        this.json.set(event.contentIndex, text);
        p.content[event.contentIndex].arguments = this.parseStreamingJson(text);
        break;
      }
      case "toolcall_end":
        p.content[event.contentIndex] = event.toolCall;
        break;
      default:
        return event; // done / error carry the final message
    }
    return { ...event, partial: p };
  }
}


/** Process-wide: one PluginLibrary per library path, whatever a host does with the module that
 * asks for it (OpenClaw evaluates a plugin module more than once per process). */
const LIBRARIES = Symbol.for("bedrock-plugin.node.libraries");

/**
 * The PluginLibrary already serving `path` in this process, or a new one made by `create()`.
 * Module copies share it through a global symbol; a closed one is replaced.
 */
export function sharedLibrary(path, create) {
  const libraries = (globalThis[LIBRARIES] ??= new Map());
  const known = libraries.get(path);
  if (known && !known.closed) return known;
  const made = create();
  libraries.set(path, made);
  return made;
}

/**
 * The plugin library for one host: streams into the host's event streams, discovery, embeddings,
 * swaps. `createEventStream` and `parseStreamingJson` are the host's own (pi-ai's or
 * @openclaw/ai's). Swappable: `swap(path)` loads another build; new streams go to it at once, the
 * old copy is freed once its streams ended and then unloaded.
 */
export class PluginLibrary {
  constructor({ path, config, drainMs = 30000, requireDigest = false, createEventStream, parseStreamingJson }) {
    if (typeof createEventStream !== "function" || typeof parseStreamingJson !== "function") {
      throw new TypeError("PluginLibrary needs the host's createEventStream and parseStreamingJson");
    }
    this.path = path;
    this.config = config;
    this.drainMs = drainMs;
    this.requireDigest = requireDigest;
    this.createEventStream = createEventStream;
    this.parseStreamingJson = parseStreamingJson;
    this.streams = new Map();
    this.nextId = 1;
    this.keepAlive = null;
    this.retiring = new Set();
    this.onEvents = (user, ndjson, _len, _count) => this.#deliver(Number(user), ndjson);
    this.current = new Copy(path, config, this.onEvents, requireDigest);
  }

  /** Static info of the serving copy: name, version, abiVersion, provider, api. */
  get info() {
    return this.current.info;
  }

  #deliver(id, ndjson) {
    const open = this.streams.get(id);
    if (!open) return 1;
    for (const line of ndjson.split("\n")) {
      if (line) this.#event(id, open, line);
    }
    return 0;
  }

  /** What one take from a copy's mailbox held: lines of many streams, each tagged with its id. */
  #deliverTaken(ndjson) {
    for (const line of ndjson.split("\n")) {
      if (!line) continue;
      let event;
      try {
        event = JSON.parse(line);
      } catch (e) {
        this.report(e);
        continue;
      }
      const id = event.stream;
      delete event.stream;
      const open = this.streams.get(id);
      if (open) this.#event(id, open, null, event);
    }
  }

  /**
   * Takes the events of `copy`'s streams from its mailbox while it has streams open, one wait at
   * a time on a koffi worker thread. A copy with no stream open is quiet even while the last wait
   * runs out; closing the copy closes the mailbox, which ends that wait, and waits for it.
   */
  async #pump(copy) {
    if (copy.pumping) return;
    copy.pumping = true;
    try {
      const text = [null], len = [0], count = [0];
      while (copy.open > 0 && copy.mailbox) {
        const status = await callAsync(copy.lib.mailbox_wait, copy.mailbox, 250, text, len, count);
        if (status !== 0) break;
        if (count[0] === 0) continue;
        const took = performance.now();
        this.#deliverTaken(text[0]);
        // A take costs three thread hops (main → koffi worker → main) whatever it carries:
        // taking at most every GATHER_MS lets one carry several tokens when few streams are
        // open. A delivery that itself took that long goes straight back.
        const rest = took + GATHER_MS - performance.now();
        if (rest >= 1 && copy.open > 0) await new Promise((resolve) => setTimeout(resolve, rest));
      }
    } catch (e) {
      this.report(e);
    } finally {
      copy.pumping = false;
      copy.settle();
    }
  }

  /** One event of stream `id`: `line` to parse, or the event already parsed. */
  #event(id, open, line, parsed) {
    let event = parsed;
    try {
      event ??= JSON.parse(line);
      open.events.push(open.apply(event));
    } catch (e) {
      // A consumer's exception (or a malformed event) costs that event, never the rest of the
      // batch nor the stream's end.
      this.report(e);
      if (event?.type === "done" || event?.type === "error") {
        try {
          open.events.push(event);
        } catch (again) {
          this.report(again);
        }
      }
    }
    if (event?.type === "done" || event?.type === "error") {
      open.finished = true;
      this.streams.delete(id);
      // The handle is released once this call has returned to the plugin.
      setImmediate(() => this.#release(open));
    }
  }

  /** Where an error with no caller to go to ends up: `onError`, else a process warning. */
  report(error) {
    if (this.onError) this.onError(error);
    else process.emitWarning(`bedrock-plugin: ${error?.stack ?? error}`);
  }

  #live(what) {
    if (this.closed) throw new Error(`bedrock-plugin: ${what} after close()`);
  }

  #release(open) {
    if (open.handle) open.copy.lib.stream_release(open.handle);
    open.handle = null;
    open.copy.open -= 1;
    open.copy.settle();
    open.detach?.();
    if (this.streams.size === 0 && this.keepAlive) {
      clearInterval(this.keepAlive);
      this.keepAlive = null;
    }
  }

  /** A stream function as pi-ai and @openclaw/ai call it: `(model, context, options)` → the host's
   * event stream. A stream that cannot start is an `error` event, never a throw. */
  stream(model, context, options = {}) {
    this.#live("stream()");
    const events = this.createEventStream();
    const copy = this.current;
    const open = new OpenStream(events, copy, this.parseStreamingJson);
    const id = this.nextId++;
    const request = JSON.stringify({ model: pluginModel(model), context, options: pluginOptions(options) });
    const signal = options.signal;
    if (signal?.aborted) {
      events.push({ type: "error", reason: "aborted", error: failedMessage(model, "the stream was cancelled", "cancelled") });
      return events;
    }
    this.streams.set(id, open);
    copy.open += 1;
    // Plugin threads call back into JavaScript; they do not hold the event loop open by themselves.
    this.keepAlive ??= setInterval(() => {}, 1 << 30);
    const out = [null], err = [null];
    const status = copy.mailbox
      ? copy.lib.stream_start_mailbox(copy.provider, request, copy.mailbox, id, out, err)
      : copy.lib.stream_start(copy.provider, request, copy.callback, id, out, err);
    if (status !== 0) {
      this.streams.delete(id);
      const failure = JSON.parse(take(copy.lib, err[0]) ?? "{}");
      events.push({ type: "error", reason: "error", error: failedMessage(model, failure.message ?? `bp_stream_start failed (${status})`, failure.code) });
      this.#release(open);
      return events;
    }
    open.handle = out[0];
    if (copy.mailbox) this.#pump(copy);
    if (signal) {
      const abort = () => open.handle && !open.finished && copy.lib.stream_cancel(open.handle);
      signal.addEventListener("abort", abort, { once: true });
      open.detach = () => signal.removeEventListener("abort", abort);
    }
    return events;
  }

  /** A blocking JSON-in, JSON-out call of the serving copy, on a koffi worker thread; the copy
   * stays loaded until it returned. */
  async #blocking(fn, what, request) {
    this.#live(`${what}`);
    const copy = this.current;
    const out = [null], err = [null];
    const status = await copy.call(copy.lib[fn], copy.provider, JSON.stringify(request), out, err);
    if (status !== 0) throw new Error(`bedrock-plugin ${what}: ${JSON.parse(take(copy.lib, err[0])).message}`);
    return JSON.parse(take(copy.lib, out[0]));
  }

  /** What bp_discover returns: `{baseUrl?, models: [...]}` (configured and discovered models). */
  async discover({ refresh = false } = {}) {
    return this.#blocking("discover", "discovery", { refresh });
  }

  /** The models the plugin can stream, as `Model` objects (pi-ai's and @openclaw/ai's shape). */
  async models({ refresh = false } = {}) {
    const config = await this.discover({ refresh });
    return config.models.map((m) => ({
      id: m.id, name: m.name ?? m.id, api: API, provider: "amazon-bedrock", baseUrl: config.baseUrl ?? "",
      reasoning: Boolean(m.reasoning), input: m.input ?? ["text"],
      cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, ...m.cost },
      contextWindow: m.contextWindow, maxTokens: m.maxTokens,
    }));
  }

  /** Memory embeddings (bp_embed): `{model?, texts, purpose?, dimensions?}`. */
  async embed(request) {
    return this.#blocking("embed", "embed", request);
  }

  /**
   * Serves new streams from the build at `path` (with `config`, by default the current one); the
   * current copy keeps its open streams and is freed and unloaded once they ended. A copy that
   * fails to load leaves the current one serving.
   */
  async swap(path = this.path, config = this.config) {
    this.#live("swap()");
    const next = new Copy(path, config, this.onEvents, this.requireDigest);
    const old = this.current;
    this.current = next;
    this.path = path;
    this.config = config;
    this.retiring.add(old);
    // Retired once its streams ended and its calls returned; an error is reported, never lost.
    old.retired = old.quiet().then(() => this.#retire(old)).catch((e) => this.report(e));
    return next.info;
  }

  async #retire(copy) {
    if (!this.retiring.delete(copy)) return;
    await copy.close(this.drainMs);
  }

  /** Stops every copy (open streams get drainMs to finish). Every later call is refused. */
  async close() {
    if (this.closed) return;
    this.closed = true;
    const copies = [this.current, ...this.retiring];
    this.retiring.clear();
    await Promise.all(copies.map((c) => c.close(this.drainMs)));
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = null;
  }

  /**
   * For a process that is exiting (no event loop left): frees every copy now, on this thread,
   * open streams cancelled. Bounded by the plugin's BP_FREE_GRACE_MS when a delivery is stuck
   * waiting for this very thread; the copies stay mapped (the process is going away).
   */
  closeNow() {
    if (this.closed) return;
    this.closed = true;
    for (const copy of [this.current, ...this.retiring]) {
      // BP_ERR_BUSY (16): a delivery still runs and may call back, so the callback stays.
      if (copy.lib.provider_free(copy.provider, 0) !== 16) copy.unregister();
    }
    this.retiring.clear();
  }
}
