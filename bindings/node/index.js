// bedrock-plugin for Node: loads the plugin's C ABI with koffi and serves pi-ai's
// `bedrock-converse-stream` API with it, so pi-ai's stream()/complete() and pi-agent-core's agent
// loop use the plugin unchanged.
//
// Events reach JavaScript in batches (bp_stream_start_batched, ABI 1.5): the plugin calls back
// from its own threads, koffi queues each call to the main thread, and one hop per batch instead
// of one per event is what makes this faster than pi-ai's own Bedrock provider. Calls that block
// (free, discover, embed) run through koffi's worker threads so the event loop stays free: a
// delivery thread waiting for the main thread must never be waited on by the main thread.

import koffi from "koffi";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAssistantMessageEventStream, parseStreamingJson, registerApiProvider, unregisterApiProviders } from "@mariozechner/pi-ai";

const API = "bedrock-converse-stream";
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

/** One loaded copy of the plugin with one provider: a generation of a BedrockPlugin. */
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
    this.callback = koffi.register(onEvents, koffi.pointer("bp_node_events_fn"));
    const out = [null], err = [null];
    if (this.lib.provider_new(JSON.stringify(config), out, err) !== 0) {
      const message = take(this.lib, err[0]);
      koffi.unregister(this.callback);
      this.unload();
      throw new Error(`bedrock-plugin: ${message}`);
    }
    this.provider = out[0];
    this.open = 0; // streams not yet ended
    this.calls = 0; // blocking calls (discover, embed) not yet returned
    this.waiters = []; // [test, resolve]: resolved by settle() once test() holds
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
    await this.#when(() => this.calls === 0);
    if (status === 16) {
      this.unload(true);
      return status;
    }
    koffi.unregister(this.callback);
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

/** pi-ai's options, as the plugin's request reads them. */
function pluginOptions(options = {}) {
  const out = {};
  for (const key of ["maxTokens", "temperature", "reasoning", "thinkingBudgets", "cacheRetention", "toolChoice", "interleavedThinking", "sessionId"]) {
    if (options[key] !== undefined) out[key] = options[key];
  }
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
  constructor(events, copy) {
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
        p.content[event.contentIndex].arguments = parseStreamingJson(text);
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

/**
 * The plugin as pi-ai's Bedrock provider. Swappable: `swap(path)` loads another build; new
 * streams go to it at once, the old copy is freed once its streams ended and then unloaded.
 */
export class BedrockPlugin {
  /** @param {{path: string, config: object, drainMs?: number}} options */
  constructor({ path, config, drainMs = 30000, requireDigest = false }) {
    this.config = config;
    this.drainMs = drainMs;
    this.requireDigest = requireDigest;
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
      if (!line) continue;
      let event;
      try {
        event = JSON.parse(line);
        open.events.push(open.apply(event));
      } catch (e) {
        // A consumer's exception (or a malformed event) costs that event, never the rest of the
        // batch nor the stream's end.
        this.#report(e);
        if (event?.type === "done" || event?.type === "error") {
          try {
            open.events.push(event);
          } catch (again) {
            this.#report(again);
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
    return 0;
  }

  #report(error) {
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

  /** pi-ai's StreamFunction for `bedrock-converse-stream`. */
  stream(model, context, options = {}) {
    this.#live("stream()");
    const events = createAssistantMessageEventStream();
    const copy = this.current;
    const open = new OpenStream(events, copy);
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
    const status = copy.lib.stream_start(copy.provider, request, copy.callback, id, out, err);
    if (status !== 0) {
      this.streams.delete(id);
      const failure = JSON.parse(take(copy.lib, err[0]) ?? "{}");
      events.push({ type: "error", reason: "error", error: failedMessage(model, failure.message ?? `bp_stream_start failed (${status})`, failure.code) });
      this.#release(open);
      return events;
    }
    open.handle = out[0];
    if (signal) {
      const abort = () => open.handle && !open.finished && copy.lib.stream_cancel(open.handle);
      signal.addEventListener("abort", abort, { once: true });
      open.detach = () => signal.removeEventListener("abort", abort);
    }
    return events;
  }

  /** Registers this plugin as pi-ai's provider for `bedrock-converse-stream`. */
  register(sourceId = "bedrock-plugin") {
    const stream = (model, context, options) => this.stream(model, context, options);
    registerApiProvider({ api: API, stream, streamSimple: stream }, sourceId);
    this.sourceId = sourceId;
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

  /** The models the plugin can stream, as pi-ai `Model` objects. */
  async models({ refresh = false } = {}) {
    const config = await this.#blocking("discover", "discovery", { refresh });
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
   * Serves new streams from the build at `path`; the current copy keeps its open streams and is
   * freed and unloaded once they ended. A copy that fails to load leaves the current one serving.
   */
  async swap(path) {
    this.#live("swap()");
    const next = new Copy(path, this.config, this.onEvents, this.requireDigest);
    const old = this.current;
    this.current = next;
    this.retiring.add(old);
    // Retired once its streams ended and its calls returned; an error is reported, never lost.
    old.retired = old.quiet().then(() => this.#retire(old)).catch((e) => this.#report(e));
    return next.info;
  }

  async #retire(copy) {
    if (!this.retiring.delete(copy)) return;
    await copy.close(this.drainMs);
  }

  /** Stops every copy (open streams get drainMs to finish) and unregisters from pi-ai. Every
   * later call is refused. */
  async close() {
    if (this.closed) return;
    this.closed = true;
    if (this.sourceId) unregisterApiProviders(this.sourceId);
    const copies = [this.current, ...this.retiring];
    this.retiring.clear();
    await Promise.all(copies.map((c) => c.close(this.drainMs)));
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = null;
  }
}

/** Loads the plugin and registers it as pi-ai's `bedrock-converse-stream` provider. */
export function registerBedrockPlugin(options) {
  const plugin = new BedrockPlugin(options);
  plugin.register(options.sourceId);
  return plugin;
}
