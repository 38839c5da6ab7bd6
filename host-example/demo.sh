#!/usr/bin/env bash
# The demo: builds the plugin, the emulator and the example host, then streams a chat.
#   host-example/demo.sh [--live] [PROMPT]
# With --live and AWS credentials configured, it talks to real Amazon Bedrock (model: $BP_MODEL,
# default Claude Sonnet 4.5 through the us. inference profile). Otherwise it starts the bundled
# Bedrock emulator on 127.0.0.1 and points the plugin at it.
set -euo pipefail
cd "$(dirname "$0")/.."

live=0
prompt=""
for arg in "$@"; do
  case "$arg" in
    --live) live=1 ;;
    *) prompt="$arg" ;;
  esac
done
prompt=${prompt:-"Tell me about Amazon Bedrock in one sentence."}

has_credentials() {
  [ -n "${AWS_BEARER_TOKEN_BEDROCK:-}" ] || [ -n "${AWS_ACCESS_KEY_ID:-}" ] || [ -n "${AWS_PROFILE:-}" ] ||
    [ -f "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ] || [ -f "${AWS_CONFIG_FILE:-$HOME/.aws/config}" ]
}

echo "==> building plugin, emulator and example host (release; the first build takes a few minutes)"
cargo build --release --quiet -p bedrock-plugin -p bedrock-emulator
make --quiet -C host-example bp-host

host=host-example/bp-host
if [ "$live" = 1 ]; then
  if ! has_credentials; then
    echo "--live needs AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_BEARER_TOKEN_BEDROCK or ~/.aws)." >&2
    exit 1
  fi
  model=${BP_MODEL:-us.anthropic.claude-sonnet-4-5-20250929-v1:0}
  echo "==> models"
  "$host" models list
  echo "==> chat with $model on Amazon Bedrock"
  exec "$host" chat --model "$model" "$prompt"
fi

echo "==> no --live: using the bundled Bedrock emulator"
workdir=$(mktemp -d)
emulator_pid=""
cleanup() {
  [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT
target/release/bedrock-emulator --port 0 > "$workdir/emulator.out" &
emulator_pid=$!
for _ in $(seq 1 100); do
  grep -q '^listening on ' "$workdir/emulator.out" 2>/dev/null && break
  sleep 0.05
done
endpoint=$(sed -n 's/^listening on //p' "$workdir/emulator.out")
[ -n "$endpoint" ] || { echo "the emulator did not start" >&2; exit 1; }

cat > "$workdir/config.json" <<JSON
{"provider": {"baseUrl": "$endpoint", "api": "bedrock-converse-stream", "auth": "aws-sdk", "models": [
  {"id": "anthropic.claude-sonnet-4-5-20250929-v1:0", "name": "Claude Sonnet 4.5", "reasoning": true, "input": ["text", "image"],
   "cost": {"input": 3, "output": 15, "cacheRead": 0.3, "cacheWrite": 3.75}, "contextWindow": 200000, "maxTokens": 8192},
  {"id": "amazon.nova-pro-v1:0", "name": "Nova Pro", "input": ["text", "image"],
   "cost": {"input": 0.8, "output": 3.2}, "contextWindow": 300000, "maxTokens": 5000}]}}
JSON
# The emulator's test credentials, and no instance-metadata lookups.
export AWS_ACCESS_KEY_ID=AKIAEMULATOR0000TEST AWS_SECRET_ACCESS_KEY=emulator/secret/key/for/tests/only/0000
export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_BEARER_TOKEN_BEDROCK

echo "==> models (emulator at $endpoint)"
"$host" --config "$workdir/config.json" models list
echo "==> chat"
"$host" --config "$workdir/config.json" chat --model anthropic.claude-sonnet-4-5-20250929-v1:0 "$prompt"
