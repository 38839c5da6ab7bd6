// The binding against pi-ai's own Bedrock provider (@aws-sdk/client-bedrock-runtime), both through
// pi-ai's stream(), on the Rust benchmark's stand-in (pre-encoded ConverseStream frames, served
// from a child process so CPU figures are this process's alone).
//
//   cargo build --release -p bedrock-plugin -p bench && node bindings/node/bench.js
//
// Prints events/s and CPU per event (user + system of this process, plugin threads included).

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { stream } from "@mariozechner/pi-ai";
import { BedrockPlugin } from "./index.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const plugin = process.env.BP_PLUGIN ?? join(root, "target/release/libbedrock_plugin.so");
const DELTAS = Number(process.env.BENCH_DELTAS ?? 100000);
const CONCURRENT = 10;

Object.assign(process.env, {
  AWS_EC2_METADATA_DISABLED: "true", AWS_ACCESS_KEY_ID: "AKIABENCH00000000000", AWS_SECRET_ACCESS_KEY: "bench/secret",
  AWS_REGION: "us-east-1", AWS_MAX_ATTEMPTS: "1", BEDROCK_PLUGIN_LOG: "off",
  // The stand-in speaks HTTP/1.1; pi-ai's provider would use HTTP/2 otherwise.
  AWS_BEDROCK_FORCE_HTTP1: "1",
});

const standin = spawn(join(root, "target/release/bench"), ["--serve"], { stdio: ["pipe", "pipe", "inherit"] });
const port = await new Promise((resolve) => createInterface({ input: standin.stdout }).once("line", (l) => resolve(l.replace("listening on ", ""))));
const endpoint = `http://127.0.0.1:${port}`;

const model = (deltas) => ({
  id: `bench-${deltas}`, name: "bench", api: "bedrock-converse-stream", provider: "amazon-bedrock", baseUrl: endpoint,
  reasoning: false, input: ["text"], cost: { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 }, contextWindow: 100000, maxTokens: 4096,
});
const context = { messages: [{ role: "user", content: "go", timestamp: 0 }] };

async function consume(deltas) {
  let events = 0;
  for await (const e of stream(model(deltas), context)) {
    events++;
    if (e.type === "error") throw new Error(e.error.errorMessage);
  }
  return events;
}

async function measure(label, streams, deltas) {
  await consume(1000); // warm connections and lazily loaded code
  const cpu = process.cpuUsage();
  const t = process.hrtime.bigint();
  const counts = await Promise.all(Array.from({ length: streams }, () => consume(deltas)));
  const wall = Number(process.hrtime.bigint() - t) / 1e9;
  const used = process.cpuUsage(cpu);
  const events = counts.reduce((a, b) => a + b, 0);
  return { label, eventsPerS: events / wall, cpuUsPerEvent: (used.user + used.system) / events, sysUsPerEvent: used.system / events };
}

const rows = [];
// pi-ai's built-in provider first: registering the plugin replaces it for this api.
rows.push(["one stream", await measure("pi-ai built-in", 1, DELTAS)]);
rows.push([`${CONCURRENT} streams`, await measure("pi-ai built-in", CONCURRENT, DELTAS / CONCURRENT)]);
const bp = new BedrockPlugin({ path: plugin, config: { provider: { baseUrl: endpoint, models: [] }, discovery: { enabled: false } } });
bp.register();
rows.push(["one stream", await measure("bedrock-plugin binding", 1, DELTAS)]);
rows.push([`${CONCURRENT} streams`, await measure("bedrock-plugin binding", CONCURRENT, DELTAS / CONCURRENT)]);
await bp.close();
standin.stdin.end();

console.log(`Node ${process.version}, ${DELTAS} deltas, stand-in ${endpoint}\n`);
console.log("| scenario | provider | events/s | CPU per event, µs (sys) |\n|---|---|---|---|");
for (const [scenario, r] of rows) {
  console.log(`| ${scenario} | ${r.label} | ${r.eventsPerS.toFixed(0)} | ${r.cpuUsPerEvent.toFixed(2)} (${r.sysUsPerEvent.toFixed(2)}) |`);
}
for (const scenario of ["one stream", `${CONCURRENT} streams`]) {
  const [builtin, binding] = rows.filter(([s]) => s === scenario).map(([, r]) => r);
  console.log(`${scenario}: binding ${(binding.eventsPerS / builtin.eventsPerS).toFixed(1)}× the events/s at ${(binding.cpuUsPerEvent / builtin.cpuUsPerEvent).toFixed(2)}× the CPU per event`);
}
