// One level of the Rust benchmark's capacity scenario (tests/bench/src/capacity.rs) in a Node
// process of its own: pi-ai's stream() with its built-in Bedrock provider (@aws-sdk/client-
// bedrock-runtime), or with the bedrock-plugin binding registered in its place.
//
//   node capacity.js <pi-ai|binding> <streams> <ramp ms> <window ms> <first seed>
//   env: CAPACITY_ENDPOINT (https://127.0.0.1:PORT of `bench --serve-paced`), BP_PLUGIN (binding),
//        NODE_EXTRA_CA_CERTS (the stand-in's CA), AWS_BEDROCK_FORCE_HTTP1=1 for HTTP/1.1 (pi-ai)
//
// Keeps <streams> open (a finished one is replaced by the next seed), started evenly over the
// ramp; over the window measures this process's CPU, its peak RSS above the start, and the delay
// it adds to each token (each token's text is the stand-in's CLOCK_MONOTONIC send time, the clock
// of process.hrtime). Prints one JSON line.

import { stream } from "@mariozechner/pi-ai";
import { BedrockPlugin } from "./index.js";

const [client, streamsArg, rampArg, windowArg, seedArg] = process.argv.slice(2);
const streams = Number(streamsArg), ramp = Number(rampArg), windowMs = Number(windowArg);
let seed = Number(seedArg);
const endpoint = process.env.CAPACITY_ENDPOINT;

const BUCKET_US = 50n, BUCKETS = 40001;
const buckets = new Uint32Array(BUCKETS);
let recording = false, tokens = 0, stopping = false;

function token(text) {
  if (!recording) return;
  const sent = BigInt(text.slice(0, text.indexOf(" ")));
  const us = (process.hrtime.bigint() - sent) / 1000n;
  const i = Number(us / BUCKET_US);
  buckets[i < BUCKETS ? i : BUCKETS - 1]++;
  tokens++;
}

function percentile(p) {
  const total = buckets.reduce((a, b) => a + b, 0);
  const target = Math.max(1, Math.ceil(total * p));
  let seen = 0;
  for (let i = 0; i < BUCKETS; i++) {
    seen += buckets[i];
    if (seen >= target) return (i + 1) * Number(BUCKET_US);
  }
  return 0;
}

const model = (id) => ({
  id, name: "pace", api: "bedrock-converse-stream", provider: "amazon-bedrock", baseUrl: endpoint,
  reasoning: false, input: ["text"], cost: { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 }, contextWindow: 100000, maxTokens: 4096,
});
const context = { messages: [{ role: "user", content: "go", timestamp: 0 }] };

let plugin;
if (client === "binding") {
  plugin = new BedrockPlugin({ path: process.env.BP_PLUGIN, config: { provider: { baseUrl: endpoint, models: [] }, discovery: { enabled: false } } });
  plugin.register();
}

async function slot(controller) {
  while (!stopping) {
    for await (const e of stream(model(`pace-${seed++}`), context, { signal: controller.signal })) {
      if (e.type === "text_delta") token(e.delta);
    }
  }
}

const rssStart = process.memoryUsage.rss();
const controllers = [];
const running = [];
const t0 = performance.now();
for (let i = 0; i < streams; i++) {
  const wait = t0 + (ramp * i) / streams - performance.now();
  if (wait > 1) await new Promise((r) => setTimeout(r, wait));
  const c = new AbortController();
  controllers.push(c);
  running.push(slot(c));
}
await new Promise((r) => setTimeout(r, Math.max(0, t0 + ramp - performance.now())));
let peak = 0;
const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()); }, 20);
const cpu = process.cpuUsage();
recording = true;
await new Promise((r) => setTimeout(r, windowMs));
recording = false;
const used = process.cpuUsage(cpu);
clearInterval(sampler);
peak = Math.max(peak, process.memoryUsage.rss());
stopping = true;
controllers.forEach((c) => c.abort());
await Promise.allSettled(running);
console.log(JSON.stringify({
  client, streams, cpuS: (used.user + used.system) / 1e6, rssKibAbove: Math.max(0, peak - rssStart) / 1024,
  p50Us: percentile(0.5), p99Us: percentile(0.99), tokens,
}));
if (plugin) await plugin.close();
process.exit(0);
