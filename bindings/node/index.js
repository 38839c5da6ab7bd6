// bedrock-plugin for pi-ai hosts: the plugin library (lib/core.js) serving pi-ai's
// `bedrock-converse-stream` API, so pi-ai's stream()/complete() and pi-agent-core's agent loop use
// the plugin unchanged. OpenClaw 2026.5.28 and later read @openclaw/ai instead of pi-ai: they use
// the OpenClaw provider plugin (bindings/openclaw) on the same library.

import { createAssistantMessageEventStream, parseStreamingJson, registerApiProvider, unregisterApiProviders } from "@mariozechner/pi-ai";
import { API, PluginLibrary } from "./lib/core.js";

/**
 * The plugin as pi-ai's Bedrock provider. Swappable: `swap(path)` loads another build; new
 * streams go to it at once, the old copy is freed once its streams ended and then unloaded.
 */
export class BedrockPlugin extends PluginLibrary {
  /** @param {{path: string, config: object, drainMs?: number, requireDigest?: boolean}} options */
  constructor(options) {
    super({ ...options, createEventStream: createAssistantMessageEventStream, parseStreamingJson });
  }

  /** Registers this plugin as pi-ai's provider for `bedrock-converse-stream`. */
  register(sourceId = "bedrock-plugin") {
    const stream = (model, context, options) => this.stream(model, context, options);
    registerApiProvider({ api: API, stream, streamSimple: stream }, sourceId);
    this.sourceId = sourceId;
  }

  /** Unregisters from pi-ai and stops every copy (open streams get drainMs to finish). */
  async close() {
    if (this.closed) return;
    if (this.sourceId) unregisterApiProviders(this.sourceId);
    await super.close();
  }
}

/** Loads the plugin and registers it as pi-ai's `bedrock-converse-stream` provider. */
export function registerBedrockPlugin(options) {
  const plugin = new BedrockPlugin(options);
  plugin.register(options.sourceId);
  return plugin;
}
