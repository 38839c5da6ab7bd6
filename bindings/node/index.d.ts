import type { Api, AssistantMessageEventStream, Context, Model, SimpleStreamOptions } from "@mariozechner/pi-ai";

import type { EmbedRequest, EmbedResult, PluginConfig, PluginInfo } from "./lib/core.js";
export type { EmbedRequest, EmbedResult, PluginConfig, PluginInfo } from "./lib/core.js";

export interface BedrockPluginOptions {
  /** Path of libbedrock_plugin.so (or .dylib); loaded from a private copy, unlinked once mapped. */
  path: string;
  config: PluginConfig;
  /** How long a retired or closing copy waits for its open streams (default 30000). */
  drainMs?: number;
  /** Load a build only with `<path>.sha256` beside it (default false: checked when present).
   * A build that changed while copied or does not match its digest is never loaded. */
  requireDigest?: boolean;
  /** pi-ai registry source id (default "bedrock-plugin"). */
  sourceId?: string;
}

export declare class BedrockPlugin {
  constructor(options: BedrockPluginOptions);
  /** Static info of the copy that serves new streams. */
  readonly info: PluginInfo;
  /** Receives errors that have no caller to go to (a consumer's exception while an event was
   * delivered, a failed retirement of an old copy); by default a process warning. */
  onError?: (error: unknown) => void;
  /** pi-ai's StreamFunction for `bedrock-converse-stream` (an AbortSignal cancels the stream). */
  stream(model: Model<Api>, context: Context, options?: SimpleStreamOptions): AssistantMessageEventStream;
  /** Registers this plugin as pi-ai's provider for `bedrock-converse-stream`. */
  register(sourceId?: string): void;
  /** Configured and discovered models, as pi-ai Model objects. */
  models(options?: { refresh?: boolean }): Promise<Model<"bedrock-converse-stream">[]>;
  /** Memory embeddings through Bedrock InvokeModel. */
  embed(request: EmbedRequest): Promise<EmbedResult>;
  /** Serves new streams from another build; the old copy is freed once its streams ended and
   * its calls (models, embed) returned. */
  swap(path?: string, config?: PluginConfig): Promise<PluginInfo>;
  /** Unregisters from pi-ai and frees every copy (open streams get drainMs; calls in flight are
   * cut short). Every later call throws. */
  close(): Promise<void>;
}

/** Loads the plugin and registers it as pi-ai's `bedrock-converse-stream` provider. */
export declare function registerBedrockPlugin(options: BedrockPluginOptions): BedrockPlugin;
