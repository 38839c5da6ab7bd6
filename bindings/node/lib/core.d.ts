// The host-neutral plugin library: no model library imported; the host hands in its own
// event-stream factory and streaming-JSON parser.

/** The plugin's init config: `{provider: <models.providers["amazon-bedrock"]>, discovery?, embeddings?, guardrail?}`. */
export interface PluginConfig {
  provider: Record<string, unknown>;
  discovery?: Record<string, unknown>;
  embeddings?: { concurrency?: number };
  guardrail?: Record<string, unknown>;
}

export interface PluginInfo {
  name: string;
  version: string;
  abiVersion: string;
  provider: "amazon-bedrock";
  api: "bedrock-converse-stream";
}

export interface EmbedRequest {
  model?: string;
  texts: string[];
  purpose?: "query" | "document";
  dimensions?: number;
}

export interface EmbedResult {
  model: string;
  dimensions: number;
  embeddings: number[][];
}

/** A model as pi-ai and @openclaw/ai describe one. */
export interface PluginModel {
  id: string;
  name: string;
  api: "bedrock-converse-stream";
  provider: "amazon-bedrock";
  baseUrl: string;
  reasoning: boolean;
  input: string[];
  cost: { input: number; output: number; cacheRead: number; cacheWrite: number };
  contextWindow: number;
  maxTokens: number;
}

/** An event stream a host can push events into (pi-ai's and @openclaw/ai's have this shape). */
export interface HostEventStream {
  push(event: unknown): void;
}

export interface PluginLibraryOptions<S extends HostEventStream> {
  /** Path of libbedrock_plugin.so; loaded from a private copy, unlinked once mapped. */
  path: string;
  config: PluginConfig;
  /** How long a retired or closing copy waits for its open streams (default 30000). */
  drainMs?: number;
  /** Load a build only with `<path>.sha256` beside it (default false: checked when present). */
  requireDigest?: boolean;
  createEventStream: () => S;
  parseStreamingJson: (text: string) => unknown;
}

export declare const API: "bedrock-converse-stream";

export declare class PluginLibrary<S extends HostEventStream = HostEventStream> {
  constructor(options: PluginLibraryOptions<S>);
  readonly path: string;
  readonly config: PluginConfig;
  readonly closed?: boolean;
  /** Static info of the copy that serves new streams. */
  readonly info: PluginInfo;
  /** Receives errors that have no caller to go to; by default a process warning. */
  onError?: (error: unknown) => void;
  report(error: unknown): void;
  /** `(model, context, options)` → the host's event stream; an AbortSignal in `options.signal` cancels. */
  stream(model: object, context: object, options?: Record<string, unknown>): S;
  /** What bp_discover returns. */
  discover(options?: { refresh?: boolean }): Promise<{ baseUrl?: string; models: Array<Record<string, unknown>> }>;
  models(options?: { refresh?: boolean }): Promise<PluginModel[]>;
  embed(request: EmbedRequest): Promise<EmbedResult>;
  /** Serves new streams from another build (or the same path with another config). */
  swap(path?: string, config?: PluginConfig): Promise<PluginInfo>;
  close(): Promise<void>;
  /** For an exiting process: frees every copy synchronously, open streams cancelled. */
  closeNow(): void;
}

/** The one PluginLibrary of this process for `path`, made by `create()` the first time. */
export declare function sharedLibrary<L extends PluginLibrary<any>>(path: string, create: () => L): L;
