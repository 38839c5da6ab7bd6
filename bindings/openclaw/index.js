// bedrock-plugin as OpenClaw's Amazon Bedrock provider (OpenClaw 2026.5.28 and later, whose model
// layer is @openclaw/ai): install it in place of OpenClaw's external Bedrock plugin.

import { createAssistantMessageEventStream, parseStreamingJson } from "openclaw/plugin-sdk/llm";
import { registerBedrock } from "./lib/plugin.js";

export default {
  id: "amazon-bedrock",
  name: "Amazon Bedrock (bedrock-plugin)",
  description: "Amazon Bedrock models and embeddings served by the bedrock-plugin native library",
  register(api) {
    registerBedrock(api, { createAssistantMessageEventStream, parseStreamingJson });
  },
};
