// What the plugin reads from OpenClaw's config: `models.providers["amazon-bedrock"]` (the
// provider entry OpenClaw documents) and `plugins.entries["amazon-bedrock"].config` (library,
// discovery, guardrail), turned into the native library's init config and per-stream options.

/** The provider entry's fields the library reads; OpenClaw adds its own (headers, params, …). */
const PROVIDER_KEYS = ["baseUrl", "api", "auth", "region", "caBundle", "models"];
const MODEL_KEYS = ["id", "name", "reasoning", "input", "cost", "contextWindow", "maxTokens"];
const DISCOVERY_KEYS = ["enabled", "region", "providerFilter", "refreshInterval", "defaultContextWindow", "defaultMaxTokens"];
export const DEFAULT_LIBRARY = "/usr/local/lib/libbedrock_plugin.so";

/** OpenClaw's auto mode: the implicit provider only when an AWS auth marker is in the environment. */
export function hasAwsMarker(env) {
  return Boolean(env.AWS_BEARER_TOKEN_BEDROCK || (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) || env.AWS_PROFILE);
}

function pick(object, keys) {
  const out = {};
  for (const key of keys) if (object?.[key] !== undefined && object[key] !== null) out[key] = object[key];
  return out;
}

/**
 * The library's init config for this OpenClaw config: `{provider, discovery, guardrail?}`.
 * Fields the library does not read are left out and named in `ignored`, so a host's own
 * bookkeeping never makes `bp_provider_new` refuse the whole provider.
 */
export function libraryConfig(openclawConfig, pluginConfig = {}, env = process.env) {
  const entry = openclawConfig?.models?.providers?.["amazon-bedrock"] ?? {};
  const provider = pick(entry, PROVIDER_KEYS);
  // A Bedrock API key written in as text; a SecretRef or OpenClaw's own markers are not the
  // library's to resolve (AWS_BEARER_TOKEN_BEDROCK reaches it through the environment).
  if (entry.auth === "api-key" && typeof entry.apiKey === "string") provider.apiKey = entry.apiKey;
  const ignored = Object.keys(entry).filter((k) => !PROVIDER_KEYS.includes(k) && k !== "apiKey");
  if (Array.isArray(entry.models)) provider.models = entry.models.map((m) => pick(m, MODEL_KEYS));
  const discovery = pick(pluginConfig.discovery ?? {}, DISCOVERY_KEYS);
  discovery.enabled ??= hasAwsMarker(env);
  const config = { provider, discovery };
  if (pluginConfig.guardrail) config.guardrail = pluginConfig.guardrail;
  return { config, ignored };
}

/** Where the library is and how it is deployed: `plugins.entries["amazon-bedrock"].config.library`. */
export function librarySettings(pluginConfig = {}, env = process.env) {
  const library = pluginConfig.library ?? {};
  return {
    path: library.path ?? env.BEDROCK_PLUGIN_LIBRARY ?? DEFAULT_LIBRARY,
    watch: library.watch ?? true,
    requireDigest: library.requireDigest ?? false,
    drainMs: library.drainMs ?? 30000,
    // Refusal-safe streaming: the models OpenClaw's Bedrock doc holds (undefined), all, or none.
    holdOutput: pluginConfig.holdOutput,
  };
}

/** The Claude routes OpenClaw streams refusal-safe: Opus 5, Sonnet 5, Fable 5, Mythos 5. */
const HELD = /claude-(opus|sonnet|fable|mythos)-5/;

/** A stream option OpenClaw keeps in `params` (per model, then `agents.defaults.params`), under
 * either of its spellings. */
function param(model, openclawConfig, names) {
  for (const params of [model?.params, openclawConfig?.agents?.defaults?.params]) {
    for (const name of names) if (params?.[name] !== undefined) return params[name];
  }
  return undefined;
}

/**
 * OpenClaw's stream options as the library's request options: what OpenClaw passes as is
 * (reasoning incl. "off", thinkingBudgets, maxTokens, temperature, signal, sessionId), plus the
 * service tier and per-model params OpenClaw leaves in its config.
 */
export function streamOptions(options = {}, model, openclawConfig, holdOutput) {
  const out = { ...options };
  const held = holdOutput ?? HELD.test(`${model?.id ?? ""} ${model?.name ?? ""}`.toLowerCase().replace(/[._:]/g, "-"));
  if (held) out.holdOutput = true;
  const tier = options.serviceTier ?? options.service_tier ?? param(model, openclawConfig, ["serviceTier", "service_tier"]);
  if (tier !== undefined) out.serviceTier = tier;
  delete out.service_tier;
  for (const key of ["temperature", "maxTokens", "cacheRetention"]) {
    if (out[key] === undefined) {
      const value = model?.params?.[key];
      if (value !== undefined) out[key] = value;
    }
  }
  return out;
}

/** bp_discover's models in OpenClaw's catalog order: global cross-region profiles first. The
 * library puts the configured entries first and sorts only what it discovered. */
export function catalogOrder(models) {
  const global = models.filter((m) => m.id.startsWith("global."));
  return [...global, ...models.filter((m) => !m.id.startsWith("global."))];
}
