// The OpenClaw provider plugin against the real library and the bundled emulator, with a stand-in
// for OpenClaw's plugin API: what register() hands OpenClaw and how it behaves when OpenClaw
// evaluates the module twice, reloads its config, or a deploy replaces the library. The real
// gateway (`openclaw agent exec`) runs in tests/openclaw.rs. Run by `cargo test --test openclaw`,
// which sets BP_PLUGIN, BP_PLUGIN_NEXT and BP_EMULATOR.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

const endpoint = process.env.BP_EMULATOR;
const pluginPath = process.env.BP_PLUGIN;
const nextPath = process.env.BP_PLUGIN_NEXT;
if (!endpoint || !pluginPath || !nextPath) throw new Error("run through `cargo test --test openclaw` (BP_EMULATOR, BP_PLUGIN, BP_PLUGIN_NEXT unset)");

// Private copies of the library go to TMPDIR: this test's own, to see that none is left behind.
const scratch = mkdtempSync(join(tmpdir(), "bp-openclaw-test-"));
const copies = join(scratch, "tmp");
mkdirSync(copies);
process.env.TMPDIR = copies;

const { registerBedrock } = await import("../lib/plugin.js");
const LIBRARIES = Symbol.for("bedrock-plugin.node.libraries");
const libraryAt = (path) => globalThis[LIBRARIES].get(path);

/** OpenClaw's event stream, as far as a provider sees it: push() in, async iteration out. */
function createAssistantMessageEventStream() {
  const queue = [];
  let wake = null;
  return {
    push(event) {
      queue.push(event);
      wake?.();
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (queue.length === 0) await new Promise((resolve) => (wake = resolve));
        const event = queue.shift();
        if (!event) continue;
        yield event;
        if (event.type === "done" || event.type === "error") return;
      }
    },
  };
}
const host = { createAssistantMessageEventStream, parseStreamingJson: (t) => { try { return JSON.parse(t); } catch { return {}; } } };

/** What OpenClaw's plugin API records of a register() call. */
function fakeApi({ config, pluginConfig }) {
  const api = {
    config, pluginConfig, registrationMode: "full", providers: [], embedders: [], infos: [], warnings: [],
    registerProvider: (p) => api.providers.push(p),
    registerEmbeddingProvider: (e) => api.embedders.push(e),
  };
  api.logger = { info: (m) => api.infos.push(m), warn: (m) => api.warnings.push(m), error: (m) => api.warnings.push(m), debug() {} };
  return api;
}

let nextLink = 0;
/** A path of its own for the library, so each test gets its own process-wide library. */
function libraryLink() {
  const link = join(scratch, `lib-${nextLink++}.so`);
  symlinkSync(pluginPath, link);
  return link;
}

const sonnet = { id: "us.anthropic.claude-sonnet-4-5-20250929-v1:0", name: "Sonnet", reasoning: true, input: ["text"], cost: { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 }, contextWindow: 200000, maxTokens: 8192 };
function openclawConfig(extra = {}) {
  return { models: { providers: { "amazon-bedrock": { baseUrl: endpoint, api: "bedrock-converse-stream", auth: "aws-sdk", models: [sonnet], headers: { "x-team": "a" } } } }, ...extra };
}
const runtimeModel = (params) => ({ ...sonnet, api: "bedrock-converse-stream", provider: "amazon-bedrock", baseUrl: endpoint, ...(params ? { params } : {}) });
const ask = (text) => ({ messages: [{ role: "user", content: text, timestamp: Date.now() }] });

async function collect(stream) {
  const events = [];
  for await (const e of stream) events.push(e);
  return events;
}
const textOf = (events) => events.filter((e) => e.type === "text_delta").map((e) => e.delta).join("");

after(async () => {
  await Promise.all([...(globalThis[LIBRARIES]?.values() ?? [])].map((lib) => lib.close()));
  rmSync(scratch, { recursive: true, force: true });
});

test("two evaluations of the module share one library, and no private copy stays on disk", async () => {
  const { registerBedrock: again } = await import("../lib/plugin.js?second-evaluation");
  assert.notEqual(again, registerBedrock, "a second module instance, as OpenClaw's loader makes");
  const path = libraryLink();
  const pluginConfig = { library: { path, watch: false }, discovery: { enabled: false } };
  const first = fakeApi({ config: openclawConfig(), pluginConfig });
  const second = fakeApi({ config: openclawConfig(), pluginConfig });
  registerBedrock(first, host);
  again(second, host);
  for (const api of [first, second]) {
    assert.equal(api.providers.length, 1);
    assert.equal(api.providers[0].id, "amazon-bedrock");
    assert.deepEqual(api.providers[0].auth, [], "the AWS chain: no API key to ask for");
    const stream = api.providers[0].createStreamFn({ config: api.config, provider: "amazon-bedrock", modelId: sonnet.id, model: runtimeModel() });
    const events = await collect(stream(runtimeModel(), ask("emulator: reply=one library"), { reasoning: "off" }));
    assert.equal(events.at(-1).type, "done", JSON.stringify(events.at(-1)));
    assert.equal(textOf(events), "one library");
  }
  assert.equal([...globalThis[LIBRARIES].keys()].filter((p) => p === path).length, 1);
  assert.equal(libraryAt(path).retiring.size, 0, "the second register() did not reload the same config");
  assert.deepEqual(readdirSync(copies), [], "private copies are unlinked once mapped");
});

test("OpenClaw's options reach Bedrock: service tier from params, per model first, thinking off", async () => {
  const path = libraryLink();
  const config = openclawConfig({ agents: { defaults: { params: { serviceTier: "flex" } } } });
  const api = fakeApi({ config, pluginConfig: { library: { path, watch: false }, discovery: { enabled: false } } });
  registerBedrock(api, host);
  const streamFn = api.providers[0].createStreamFn({ config, provider: "amazon-bedrock", modelId: sonnet.id, model: runtimeModel() });
  const sentWith = async (model, options) => JSON.parse(textOf(await collect(streamFn(model, ask("emulator: echo=request"), options))));
  const defaults = await sentWith(runtimeModel(), { reasoning: "off", temperature: 0.2 });
  assert.deepEqual(defaults.serviceTier, { type: "flex" }, "agents.defaults.params.serviceTier");
  assert.equal(defaults.additionalModelRequestFields?.thinking, undefined, "thinking off");
  const perModel = await sentWith(runtimeModel({ service_tier: "priority" }), { reasoning: "low" });
  assert.deepEqual(perModel.serviceTier, { type: "priority" }, "the model's own params win, either spelling");
  assert.equal(perModel.additionalModelRequestFields.thinking.type, "enabled", "thinking low");
});

test("refusal-safe streaming for the Claude 5 routes OpenClaw holds, or as configured", async () => {
  const refused = ask("emulator: chunks=6 stop=content_filtered");
  const run = async (pluginConfig, id) => {
    const path = libraryLink();
    const api = fakeApi({ config: openclawConfig(), pluginConfig: { library: { path, watch: false }, discovery: { enabled: false }, ...pluginConfig } });
    registerBedrock(api, host);
    const model = { ...runtimeModel(), id, name: id };
    const streamFn = api.providers[0].createStreamFn({ config: api.config, provider: "amazon-bedrock", modelId: id, model });
    return (await collect(streamFn(model, refused, {}))).map((e) => e.type);
  };
  assert.deepEqual(await run({}, "us.anthropic.claude-sonnet-5"), ["start", "error"], "held: nothing of the refused answer shows");
  assert.ok((await run({}, sonnet.id)).includes("text_delta"), "Sonnet 4.5 streams live");
  assert.deepEqual(await run({ holdOutput: true }, sonnet.id), ["start", "error"], "holdOutput: true holds every model");
  assert.ok((await run({ holdOutput: false }, "global.anthropic.claude-opus-5")).includes("text_delta"), "holdOutput: false holds none");
});

test("the catalog is what bp_discover found, global profiles first", async () => {
  const path = libraryLink();
  const api = fakeApi({ config: openclawConfig(), pluginConfig: { library: { path, watch: false }, discovery: { enabled: true } } });
  registerBedrock(api, host);
  const result = await api.providers[0].catalog.run({ config: api.config, env: process.env });
  const ids = result.provider.models.map((m) => m.id);
  assert.ok(ids.includes("global.anthropic.claude-sonnet-4-5-20250929-v1:0") && ids.includes("amazon.nova-pro-v1:0"), ids.join(", "));
  const firstOther = ids.findIndex((id) => !id.startsWith("global."));
  assert.ok(ids.slice(firstOther).every((id) => !id.startsWith("global.")), `global profiles first: ${ids.join(", ")}`);
  assert.equal(result.provider.api, "bedrock-converse-stream");
  assert.equal(result.provider.auth, "aws-sdk");
  assert.equal(result.provider.models[0].contextWindow > 0, true);

  // With discovery off and no models configured there is nothing to list (OpenClaw's auto mode).
  const none = fakeApi({ config: {}, pluginConfig: { library: { path, watch: false }, discovery: { enabled: false } } });
  registerBedrock(none, host);
  assert.equal(await none.providers[0].catalog.run({ config: {}, env: process.env }), null);
});

test("memory search embeddings: provider `bedrock`, Titan V2 by default, any length the model offers", async () => {
  const path = libraryLink();
  const api = fakeApi({ config: openclawConfig(), pluginConfig: { library: { path, watch: false }, discovery: { enabled: false } } });
  registerBedrock(api, host);
  const adapter = api.embedders[0];
  assert.equal(adapter.id, "bedrock");
  assert.equal(adapter.defaultModel, "amazon.titan-embed-text-v2:0");
  const { provider } = await adapter.create({ config: api.config, model: "" });
  assert.equal(provider.model, "amazon.titan-embed-text-v2:0");
  const batch = await provider.embedBatch(["first note", { text: "second note" }]);
  assert.equal(batch.length, 2);
  assert.equal(batch[0].length, 1024);
  assert.deepEqual(await provider.embedBatch([]), []);
  const { provider: small } = await adapter.create({ config: api.config, model: "us.amazon.nova-2-multimodal-embeddings-v1:0", dimensions: 256 });
  const query = await small.embed("what did I note?", { inputType: "query" });
  assert.equal(query.length, 256);
  const { provider: nova } = await adapter.create({ config: api.config, model: "amazon.nova-2-multimodal-embeddings-v1:0" });
  assert.equal((await nova.embed("x")).length, 1024, "Nova at OpenClaw's default length, so its indexes stay valid");
});

test("a config reload swaps the library to the new config; a stream in flight finishes on the old copy", async () => {
  const path = libraryLink();
  const pluginConfig = { library: { path, watch: false }, discovery: { enabled: false } };
  const api = fakeApi({ config: openclawConfig(), pluginConfig });
  registerBedrock(api, host);
  const streamFn = api.providers[0].createStreamFn({ config: api.config, provider: "amazon-bedrock", modelId: sonnet.id, model: runtimeModel() });
  const slow = collect(streamFn(runtimeModel(), ask("emulator: chunks=20 delay_ms=40"), {}));
  await new Promise((r) => setTimeout(r, 150));
  const before = libraryAt(path).current;

  const reloaded = openclawConfig();
  reloaded.models.providers["amazon-bedrock"].models.push({ ...sonnet, id: "emulator.echo", name: "Echo" });
  const api2 = fakeApi({ config: reloaded, pluginConfig });
  registerBedrock(api2, host);
  const streamFn2 = api2.providers[0].createStreamFn({ config: reloaded, provider: "amazon-bedrock", modelId: "emulator.echo", model: runtimeModel() });
  const after = await collect(streamFn2(runtimeModel(), ask("emulator: reply=new config"), {}));
  assert.equal(textOf(after), "new config");
  assert.notEqual(libraryAt(path).current, before, "new streams are served by a copy with the reloaded config");
  assert.ok(libraryAt(path).config.provider.models.some((m) => m.id === "emulator.echo"));
  const old = await slow;
  assert.equal(old.at(-1).type, "done", "the stream in flight finished on the old copy");
  assert.equal(textOf(old).split(" ").filter(Boolean).length, 20);
  assert.deepEqual(api2.warnings, []);
});

test("a deploy that replaces the library file is swapped in under load; a build that fails its digest is refused", async () => {
  const dir = mkdtempSync(join(scratch, "deploy-"));
  const path = join(dir, "libbedrock_plugin.so");
  copyFileSync(pluginPath, path);
  const api = fakeApi({ config: openclawConfig(), pluginConfig: { library: { path, watch: true }, discovery: { enabled: false } } });
  registerBedrock(api, host);
  const streamFn = api.providers[0].createStreamFn({ config: api.config, provider: "amazon-bedrock", modelId: sonnet.id, model: runtimeModel() });
  const slow = collect(streamFn(runtimeModel(), ask("emulator: chunks=30 delay_ms=100"), {}));
  await new Promise((r) => setTimeout(r, 200));
  const first = libraryAt(path).current;
  const deploy = (from) => {
    copyFileSync(from, `${path}.incoming`);
    renameSync(`${path}.incoming`, path);
  };
  const until = async (what, test) => {
    for (let i = 0; i < 100 && !test(); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(test(), what);
  };
  deploy(nextPath);
  await until("the new build is swapped in", () => libraryAt(path).current !== first);
  assert.match(api.infos.join("\n"), /swapped to bedrock-plugin/);
  const fresh = await collect(streamFn(runtimeModel(), ask("emulator: reply=from the new build"), {}));
  assert.equal(textOf(fresh), "from the new build");
  const old = await slow;
  assert.equal(old.at(-1).type, "done", "the stream in flight finished on the old copy");

  // A digest beside the file that names another build: refused, the serving copy stays.
  const serving = libraryAt(path).current;
  writeFileSync(`${path}.sha256`, `${"0".repeat(64)}  libbedrock_plugin.so\n`);
  deploy(pluginPath);
  await until("the refusal is reported", () => api.warnings.some((w) => w.includes("kept the serving copy")));
  assert.match(api.warnings.join("\n"), /SHA-256/);
  assert.equal(libraryAt(path).current, serving);
  const still = await collect(streamFn(runtimeModel(), ask("emulator: reply=still serving"), {}));
  assert.equal(textOf(still), "still serving");
  libraryAt(path).unwatch();
});

test("a process that exits with a stream in flight frees the library and exits at once", () => {
  const script = `
    const { registerBedrock } = await import(${JSON.stringify(new URL("../lib/plugin.js", import.meta.url).href)});
    const host = { createAssistantMessageEventStream: () => ({ push(e) { if (e.type === "text_delta") process.exit(0); } }), parseStreamingJson: JSON.parse };
    const api = { config: ${JSON.stringify(openclawConfig())}, pluginConfig: { library: { path: ${JSON.stringify(pluginPath)}, watch: false }, discovery: { enabled: false } },
      logger: { info() {}, warn: console.error, error: console.error }, registerProvider(p) { api.p = p; }, registerEmbeddingProvider() {} };
    registerBedrock(api, host);
    api.p.createStreamFn({})(${JSON.stringify(runtimeModel())}, ${JSON.stringify(ask("emulator: chunks=100 delay_ms=50"))}, {});
  `;
  const started = Date.now();
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { env: { ...process.env, TMPDIR: copies }, timeout: 20000, encoding: "utf8" });
  assert.equal(child.status, 0, `exit status ${child.status} ${child.signal ?? ""}: ${child.stderr}`);
  assert.ok(Date.now() - started < 15000, "no hang on exit");
  assert.deepEqual(readdirSync(copies), [], "nothing left in TMPDIR");
});

test("a worker thread that listed models does not keep the process from exiting", () => {
  // OpenClaw lists models in a worker thread and then exits the process: Node tears the worker
  // down, which hung for good while the library held a koffi callback registered in it.
  const worker = `
    import { parentPort } from "node:worker_threads";
    const { registerBedrock } = await import(${JSON.stringify(new URL("../lib/plugin.js", import.meta.url).href)});
    const api = { config: ${JSON.stringify(openclawConfig())}, pluginConfig: { library: { path: ${JSON.stringify(pluginPath)}, watch: false }, discovery: { enabled: true } },
      logger: { info() {}, warn: console.error, error: console.error }, registerProvider(p) { api.p = p; }, registerEmbeddingProvider() {} };
    registerBedrock(api, ${"{"} createAssistantMessageEventStream() {}, parseStreamingJson: JSON.parse ${"}"});
    const found = await api.p.catalog.run({ config: api.config, env: process.env });
    parentPort.postMessage(found.provider.models.length);
    setInterval(() => {}, 1000); // still running when the process exits, as OpenClaw's is
  `;
  const main = `
    import { Worker } from "node:worker_threads";
    const w = new Worker(new URL("data:text/javascript," + encodeURIComponent(${JSON.stringify(worker)})));
    w.on("message", (n) => { console.log("models", n); process.exit(0); });
    w.on("error", (e) => { console.error(e); process.exit(3); });
  `;
  const started = Date.now();
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", main], { env: { ...process.env, TMPDIR: copies }, timeout: 30000, encoding: "utf8" });
  assert.equal(child.status, 0, `exit status ${child.status} ${child.signal ?? ""} after ${Date.now() - started} ms: ${child.stderr}`);
  assert.match(child.stdout, /models [1-9]/);
});
