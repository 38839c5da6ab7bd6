// The OpenClaw side of the plugin: registers `amazon-bedrock` (API `bedrock-converse-stream`) with
// a stream function on the native library, its discovered models as the provider's catalog, and
// Bedrock embeddings for memory search. OpenClaw's own model layer (@openclaw/ai) hands in its
// event-stream factory, so events go from the library to OpenClaw with nothing in between.
//
// One library per process (OpenClaw evaluates a plugin module more than once): the first
// register() that needs it loads it, later ones find it by path; a register() with another
// provider config (a config reload) swaps it to a copy with that config, streams in flight
// finishing on the old one. A changed library file is swapped in the same way.

import { statSync, unwatchFile, watchFile } from "node:fs";
import { PluginLibrary, sharedLibrary } from "@bedrock-plugin/node/core";
import { catalogOrder, libraryConfig, librarySettings, streamOptions } from "./settings.js";

const PROVIDER = "amazon-bedrock";
export const EMBEDDING_PROVIDER = "bedrock";
export const DEFAULT_EMBEDDING_MODEL = "amazon.titan-embed-text-v2:0";
const EXIT_HOOK = Symbol.for("bedrock-plugin.openclaw.exit");
const LIBRARIES = Symbol.for("bedrock-plugin.node.libraries");

/** Frees every library of this process on exit (once, whichever module copy got here first). */
function closeOnExit() {
  if (globalThis[EXIT_HOOK]) return;
  globalThis[EXIT_HOOK] = true;
  process.once("exit", () => {
    for (const lib of globalThis[LIBRARIES]?.values() ?? []) {
      try {
        lib.closeNow();
      } catch {
        // The process is going away; nothing is left to tell.
      }
    }
  });
}

/** Swaps `lib` to the file at its path when a deploy replaced it (rename or in place), once the
 * file has stopped changing; a build that fails its checks is refused and the old copy serves on. */
export function watchLibrary(lib, logger, intervalMs = 1000) {
  if (lib.unwatch) return;
  let pending = null;
  const changed = (now, before) => {
    if (now.ino === 0 || (now.ino === before.ino && now.mtimeMs === before.mtimeMs && now.size === before.size)) return;
    clearTimeout(pending);
    pending = setTimeout(() => {
      let settled;
      try {
        settled = statSync(lib.path);
      } catch {
        return;
      }
      if (settled.mtimeMs !== now.mtimeMs || settled.size !== now.size) return; // still being written: its next change retries
      lib.swap(lib.path, lib.config).then(
        (info) => logger.info(`bedrock-plugin: swapped to ${info.name} ${info.version} from ${lib.path}`),
        (e) => logger.warn(`bedrock-plugin: kept the serving copy: ${e.message}`),
      );
    }, intervalMs);
    pending.unref?.();
  };
  watchFile(lib.path, { interval: intervalMs, persistent: false }, changed);
  lib.unwatch = () => unwatchFile(lib.path, changed);
}

/** OpenClaw's embedding provider `bedrock` on the library's bp_embed. */
function embeddingProvider(library) {
  return {
    id: EMBEDDING_PROVIDER,
    defaultModel: DEFAULT_EMBEDDING_MODEL,
    transport: "remote",
    authProviderId: PROVIDER,
    create: async (options) => {
      const model = options.model || DEFAULT_EMBEDDING_MODEL;
      const embed = async (inputs, call = {}) => {
        const request = { model, texts: inputs.map((i) => (typeof i === "string" ? i : i.text)), purpose: call.inputType === "query" ? "query" : "document" };
        if (options.dimensions) request.dimensions = options.dimensions;
        return (await library().embed(request)).embeddings;
      };
      return {
        provider: {
          id: EMBEDDING_PROVIDER,
          model,
          dimensions: options.dimensions,
          embed: async (input, call) => (await embed([input], call))[0],
          embedBatch: async (inputs, call) => (inputs.length ? embed(inputs, call) : []),
        },
        runtime: { id: EMBEDDING_PROVIDER, cacheKeyData: { provider: EMBEDDING_PROVIDER, model, dimensions: options.dimensions ?? null } },
      };
    },
  };
}

/**
 * Registers the provider (and the embedding provider) on `api`. `host` is OpenClaw's model
 * layer: `{createAssistantMessageEventStream, parseStreamingJson}`. Synchronous, as OpenClaw
 * requires; nothing is loaded until a stream, a catalog or an embedding needs the library.
 */
export function registerBedrock(api, host, env = process.env) {
  const settings = librarySettings(api.pluginConfig ?? {}, env);
  const logger = api.logger ?? { info() {}, warn: (m) => process.emitWarning(m), error: (m) => process.emitWarning(m) };
  const { config, ignored } = libraryConfig(api.config ?? {}, api.pluginConfig ?? {}, env);
  if (ignored.length) logger.debug?.(`bedrock-plugin: provider fields the library does not use: ${ignored.join(", ")}`);
  const wanted = JSON.stringify(config);
  let checked = null;

  const library = () => {
    const lib = sharedLibrary(settings.path, () => {
      const made = new PluginLibrary({
        path: settings.path, config, drainMs: settings.drainMs, requireDigest: settings.requireDigest,
        createEventStream: host.createAssistantMessageEventStream, parseStreamingJson: host.parseStreamingJson,
      });
      made.onError = (e) => logger.warn(`bedrock-plugin: ${e?.message ?? e}`);
      return made;
    });
    if (checked !== lib) {
      checked = lib;
      // This register() saw another provider config than the library serves (a config reload):
      // new streams get it; a config the library refuses leaves the old one serving.
      if (JSON.stringify(lib.config) !== wanted) {
        lib.swap(lib.path, config).catch((e) => logger.warn(`bedrock-plugin: config reload refused, the previous config serves on: ${e.message}`));
      }
      closeOnExit();
      if (settings.watch) watchLibrary(lib, logger);
    }
    return lib;
  };

  api.registerProvider({
    id: PROVIDER,
    label: "Amazon Bedrock (bedrock-plugin)",
    docsPath: "/providers/bedrock",
    // The AWS SDK chain inside the library: no API key to ask for.
    auth: [],
    catalog: {
      order: "simple",
      run: async () => {
        if (!config.discovery.enabled && !(config.provider.models?.length > 0)) return null;
        const found = await library().models();
        const models = catalogOrder(found).map(({ provider: _p, api: _a, baseUrl: _b, ...m }) => m);
        return { provider: { baseUrl: config.provider.baseUrl ?? "", api: "bedrock-converse-stream", auth: "aws-sdk", models } };
      },
    },
    createStreamFn: (ctx) => (model, context, options) => library().stream(model, context, streamOptions(options, model, ctx.config ?? api.config, settings.holdOutput)),
  });

  api.registerEmbeddingProvider?.(embeddingProvider(library));
}
