//! Every credential, region and proxy path, each in a child process with exactly the environment
//! under test (the AWS SDK reads the environment process-wide). The parent starts the emulator
//! (Bedrock, STS and IMDS on one port), writes shared config files, runs this same binary as the
//! child, and asserts on what the child got through the C ABI and on what the emulator saw.
//! `cargo test --release --test auth -- <part of a name>` runs a subset.

mod common;
use common::proxy::Proxy;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the child: the comma-separated steps it runs.
const CHILD: &str = "BP_AUTH_CHILD_STEPS";
const API_KEY: &str = "bedrock-api-key-EXAMPLE-0123456789";

fn main() {
    if let Ok(steps) = std::env::var(CHILD) {
        child(&steps);
        return;
    }
    let cases: &[(&str, fn())] = &[
        ("env_keys_with_and_without_session_token", env_keys_with_and_without_session_token),
        ("profile_from_shared_files", profile_from_shared_files),
        ("profile_that_assumes_a_role_through_sts", profile_that_assumes_a_role_through_sts),
        ("instance_role_from_imds_is_refreshed_while_serving", instance_role_from_imds_is_refreshed_while_serving),
        ("bedrock_api_key_from_env_wins_over_aws_profile", bedrock_api_key_from_env_wins_over_aws_profile),
        ("bedrock_api_key_from_config", bedrock_api_key_from_config),
        ("wrong_api_key_is_refused_without_echoing_it", wrong_api_key_is_refused_without_echoing_it),
        ("no_credentials_init_succeeds_and_calls_name_the_sources", no_credentials_init_succeeds_and_calls_name_the_sources),
        ("rewritten_credentials_file_is_picked_up_after_expiry", rewritten_credentials_file_is_picked_up_after_expiry),
        ("region_order", region_order),
        ("proxies_from_the_environment", proxies_from_the_environment),
        ("skip_auth_sends_unsigned_requests", skip_auth_sends_unsigned_requests),
        ("tls_trusts_a_ca_bundle_and_refuses_an_untrusted_certificate", tls_trusts_a_ca_bundle_and_refuses_an_untrusted_certificate),
        ("fake_secrets_never_appear_in_anything_the_plugin_emits", fake_secrets_never_appear_in_anything_the_plugin_emits),
    ];
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let selected: Vec<_> = cases.iter().filter(|(name, _)| filter.as_ref().is_none_or(|f| name.contains(f.as_str()))).collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, case) in selected.iter() {
        let started = Instant::now();
        let ok = std::panic::catch_unwind(*case).is_ok();
        println!("test {name} ... {} ({} ms)", if ok { "ok" } else { "FAILED" }, started.elapsed().as_millis());
        if !ok {
            failed.push(*name);
        }
    }
    let verdict = if failed.is_empty() { "ok" } else { "FAILED" };
    println!("\ntest result: {verdict}. {} passed; {} failed: {failed:?}\n", selected.len() - failed.len(), failed.len());
    if !failed.is_empty() {
        std::process::exit(101);
    }
}

// ---- child side --------------------------------------------------------------------------

fn report(step: &str, value: Value) {
    println!("RESULT {step} {value}");
    std::io::stdout().flush().unwrap();
}

fn child(steps: &str) {
    let config = std::env::var("BP_CONFIG").expect("BP_CONFIG");
    let p = match Provider::try_new(&config) {
        Ok(p) => p,
        Err((rc, e)) => return report("init", json!({"rc": rc, "error": e})),
    };
    report("init", json!({"rc": 0}));
    let model = std::env::var("BP_MODEL").unwrap_or_else(|_| "emulator.echo".into());
    for step in steps.split(',') {
        match step {
            "discover" | "refresh" => {
                let options = (step == "refresh").then_some(r#"{"refresh": true}"#);
                match p.discover(options) {
                    Ok(out) => report(step, out),
                    Err((rc, e)) => report(step, json!({"rc": rc, "error": e})),
                }
            }
            "chat" => {
                let events = start(&p, &request(&model, "emulator: reply=hello", json!({}))).finish();
                report("chat", terminal(&events).clone());
            }
            "wait" => {
                println!("WAITING");
                std::io::stdout().flush().unwrap();
                std::io::stdin().read_line(&mut String::new()).unwrap();
            }
            other => {
                let ms = other.strip_prefix("sleep:").and_then(|m| m.parse().ok()).expect("known step");
                std::thread::sleep(Duration::from_millis(ms));
            }
        }
    }
}

// ---- parent side -------------------------------------------------------------------------

struct Run {
    results: Vec<(String, Value)>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn get(&self, step: &str, nth: usize) -> &Value {
        self.results
            .iter()
            .filter(|(s, _)| s == step)
            .nth(nth)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no result #{nth} for {step}; stdout: {}\nstderr: {}", self.stdout, self.stderr))
    }

    fn everything(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A scratch directory for one case (HOME and the shared files live there).
fn scratch(case: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bp-auth-{}-{case}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the child with a clean environment plus `env` (`None` removes a default). `on_wait` runs
/// each time the child reaches a `wait` step.
fn run_child(case: &str, steps: &str, config: &Value, env: &[(&str, Option<String>)], mut on_wait: impl FnMut()) -> Run {
    let home = scratch(case);
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env(KEEP_ENV, "1")
        .env(CHILD, steps)
        .env("BP_CONFIG", config.to_string())
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("BEDROCK_PLUGIN_LOG", "info");
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn child");
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr_pipe, &mut s).ok();
        s
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut results = Vec::new();
    let mut stdout = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        stdout.push_str(&line);
        stdout.push('\n');
        if line == "WAITING" {
            on_wait();
            stdin.write_all(b"\n").unwrap();
            stdin.flush().unwrap();
        } else if let Some(rest) = line.strip_prefix("RESULT ") {
            let (step, json) = rest.split_once(' ').unwrap();
            results.push((step.to_string(), serde_json::from_str(json).unwrap()));
        }
    }
    let status = child.wait().unwrap();
    // The case's HOME and shared files are the child's alone: once it exited, nothing reads them.
    let _ = std::fs::remove_dir_all(&home);
    let run = Run { results, stdout, stderr: stderr.join().unwrap() };
    assert!(status.success(), "child failed: {status}\nstdout: {}\nstderr: {}", run.stdout, run.stderr);
    run
}

fn some(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn env_keys() -> Vec<(&'static str, Option<String>)> {
    vec![("AWS_ACCESS_KEY_ID", some(TEST_ACCESS_KEY)), ("AWS_SECRET_ACCESS_KEY", some(TEST_SECRET_KEY)), ("AWS_REGION", some("us-east-1"))]
}

fn config(emulator: &Emulator, discovery: Value) -> Value {
    json!({"provider": {"baseUrl": emulator.endpoint(), "models": models()}, "discovery": discovery})
}

fn assert_done(v: &Value) {
    assert_eq!(v["type"], "done", "{v}");
    assert_eq!(v["message"]["content"][0]["text"], "hello", "{v}");
}

fn env_keys_with_and_without_session_token() {
    let emulator = Emulator::start(EmulatorConfig::default());
    let mut env = env_keys();
    env.push(("AWS_REGION", some("us-west-2")));
    let run = run_child("keys", "chat,discover", &config(&emulator, json!({})), &env, || {});
    assert_done(run.get("chat", 0));
    assert_eq!(run.get("discover", 0)["discovery"]["authSource"], json!({"kind": "aws-sdk", "origin": "AWS_ACCESS_KEY_ID", "ignored": []}));
    let stats = emulator.stats();
    assert_eq!((stats.last_access_key.as_deref(), stats.last_region.as_deref(), stats.last_auth.as_deref()), (Some(TEST_ACCESS_KEY), Some("us-west-2"), Some("sigv4")));

    let emulator = Emulator::start(EmulatorConfig { session_token: Some("session-token-0001".into()), ..EmulatorConfig::default() });
    let mut with_token = env_keys();
    with_token.push(("AWS_SESSION_TOKEN", some("session-token-0001")));
    let run = run_child("session", "chat,discover", &config(&emulator, json!({})), &with_token, || {});
    assert_done(run.get("chat", 0));
    assert_eq!(run.get("discover", 0)["discovery"]["authSource"]["origin"], "AWS_ACCESS_KEY_ID+AWS_SESSION_TOKEN");
    let run = run_child("session-missing", "chat", &config(&emulator, json!({})), &env_keys(), || {});
    let error = &failure(run.get("chat", 0));
    assert_eq!((error["code"].as_str(), error["awsErrorType"].as_str()), (Some("auth"), Some("UnrecognizedClientException")), "{error}");
}

/// Writes the shared config and credentials files of a case.
fn shared_files(case: &str, config: &str, credentials: &str) -> Vec<(&'static str, Option<String>)> {
    let dir = scratch(case);
    let (c, k) = (dir.join("config"), dir.join("credentials"));
    std::fs::write(&c, config).unwrap();
    std::fs::write(&k, credentials).unwrap();
    vec![
        ("AWS_CONFIG_FILE", some(c.to_str().unwrap())),
        ("AWS_SHARED_CREDENTIALS_FILE", some(k.to_str().unwrap())),
        ("AWS_REGION", some("us-east-1")),
    ]
}

fn profile_from_shared_files() {
    let emulator = Emulator::start(EmulatorConfig::default());
    let mut env = shared_files(
        "profile",
        "[profile dev]\nregion = us-east-1\n",
        &format!("[dev]\naws_access_key_id = {TEST_ACCESS_KEY}\naws_secret_access_key = {TEST_SECRET_KEY}\n"),
    );
    env.push(("AWS_PROFILE", some("dev")));
    // discovery.enabled is unset: AWS_PROFILE is an auth marker, so discovery runs.
    let run = run_child("profile", "chat,discover", &config(&emulator, json!({})), &env, || {});
    assert_done(run.get("chat", 0));
    let report = &run.get("discover", 0)["discovery"];
    assert_eq!((report["status"].as_str(), report["authSource"]["origin"].as_str()), (Some("discovered"), Some("AWS_PROFILE=dev")));
    assert_eq!(emulator.stats().last_access_key.as_deref(), Some(TEST_ACCESS_KEY));
    assert!(run.stderr.contains("profile \"dev\" (AWS_PROFILE)"), "{}", run.stderr);
}

fn profile_that_assumes_a_role_through_sts() {
    let emulator = Emulator::start(EmulatorConfig::default());
    let role = "arn:aws:iam::123456789012:role/bedrock-user";
    let mut env = shared_files(
        "assume-role",
        &format!("[profile dev]\nrole_arn = {role}\nsource_profile = base\n\n[profile base]\nregion = us-east-1\n"),
        &format!("[base]\naws_access_key_id = {TEST_ACCESS_KEY}\naws_secret_access_key = {TEST_SECRET_KEY}\n"),
    );
    env.push(("AWS_PROFILE", some("dev")));
    env.push(("AWS_ENDPOINT_URL_STS", Some(emulator.endpoint())));
    let run = run_child("assume-role", "chat,chat", &config(&emulator, json!({})), &env, || {});
    assert_done(run.get("chat", 0));
    assert_done(run.get("chat", 1));
    let stats = emulator.stats();
    assert_eq!((stats.sts_assume_role, stats.last_role_arn.as_deref()), (1, Some(role)), "one AssumeRole, then cached");
    let key = stats.last_access_key.unwrap();
    assert!(key.starts_with("ASIASTS"), "Bedrock was called with the role's credentials, got {key}");
}

fn instance_role_from_imds_is_refreshed_while_serving() {
    // 10 s credentials: the SDK renews credentials 10 s before they expire, plus up to 5 s of
    // jitter added to the expiry, so these are renewed at most 5 s after they were fetched.
    let emulator = Emulator::start(EmulatorConfig {
        imds_role: Some("bedrock-instance-role".into()),
        temporary_credentials_ttl: Duration::from_secs(10),
        ..EmulatorConfig::default()
    });
    let env = vec![
        ("AWS_EC2_METADATA_DISABLED", None),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", Some(emulator.endpoint())),
        ("AWS_REGION", some("us-east-1")),
    ];
    let run = run_child("imds", "discover,chat,sleep:5500,chat", &config(&emulator, json!({"enabled": true})), &env, || {});
    assert_eq!(run.get("discover", 0)["discovery"]["authSource"]["origin"], "default-chain", "{}", run.everything());
    assert_done(run.get("chat", 0));
    assert_done(run.get("chat", 1));
    let stats = emulator.stats();
    assert!(stats.imds_tokens >= 1 && stats.imds_credentials >= 2, "{:?}", stats.to_json());
    assert!(stats.access_keys.len() >= 2 && stats.access_keys.iter().all(|k| k.starts_with("ASIAIMDS")), "{:?}", stats.access_keys);
}

fn bedrock_api_key_from_env_wins_over_aws_profile() {
    let emulator = Emulator::start(EmulatorConfig { bearer_token: Some(API_KEY.into()), ..EmulatorConfig::default() });
    let env = vec![("AWS_BEARER_TOKEN_BEDROCK", some(API_KEY)), ("AWS_PROFILE", some("set-by-tooling")), ("AWS_REGION", some("us-east-1"))];
    let run = run_child("bearer", "chat,discover", &config(&emulator, json!({})), &env, || {});
    assert_done(run.get("chat", 0));
    let report = &run.get("discover", 0)["discovery"];
    assert_eq!(report["status"], "discovered");
    assert_eq!(report["authSource"], json!({"kind": "bedrock-api-key", "origin": "AWS_BEARER_TOKEN_BEDROCK", "ignored": ["AWS_PROFILE=set-by-tooling"]}));
    let stats = emulator.stats();
    assert!(stats.bearer_ok >= 2 && stats.sigv4_ok == 0, "runtime and control plane both use the key: {:?}", stats.to_json());
    assert!(run.stderr.contains("Bedrock API key from AWS_BEARER_TOKEN_BEDROCK; ignoring AWS_PROFILE=set-by-tooling"), "{}", run.stderr);
    assert!(!run.everything().contains(API_KEY), "the key leaked into output");
}

fn bedrock_api_key_from_config() {
    let emulator = Emulator::start(EmulatorConfig { bearer_token: Some(API_KEY.into()), ..EmulatorConfig::default() });
    let mut cfg = config(&emulator, json!({}));
    cfg["provider"]["auth"] = json!("api-key");
    cfg["provider"]["apiKey"] = json!(API_KEY);
    let run = run_child("config-key", "chat,discover", &cfg, &[("AWS_REGION", some("us-east-1"))], || {});
    assert_done(run.get("chat", 0));
    assert_eq!(run.get("discover", 0)["discovery"]["authSource"]["origin"], "provider.apiKey");
    assert_eq!(emulator.stats().last_auth.as_deref(), Some("bearer"));
    assert!(!run.everything().contains(API_KEY));
}

fn wrong_api_key_is_refused_without_echoing_it() {
    let emulator = Emulator::start(EmulatorConfig { bearer_token: Some("the-right-key".into()), ..EmulatorConfig::default() });
    let env = vec![("AWS_BEARER_TOKEN_BEDROCK", some(API_KEY)), ("AWS_REGION", some("us-east-1"))];
    let run = run_child("wrong-key", "chat", &config(&emulator, json!({})), &env, || {});
    let error = &failure(run.get("chat", 0));
    assert_eq!((error["code"].as_str(), error["awsErrorType"].as_str(), error["httpStatus"].as_u64()), (Some("auth"), Some("UnrecognizedClientException"), Some(403)));
    assert_eq!(emulator.stats().auth_failures, 1, "a refused API key is final: no second attempt");
    assert!(!run.everything().contains(API_KEY));
}

fn no_credentials_init_succeeds_and_calls_name_the_sources() {
    let emulator = Emulator::start(EmulatorConfig::default());
    let env = [("AWS_REGION", some("us-east-1"))];
    let run = run_child("none", "discover,chat", &config(&emulator, json!({})), &env, || {});
    assert_eq!(run.get("init", 0)["rc"], 0);
    let report = &run.get("discover", 0)["discovery"];
    assert_eq!(report["status"], "disabled");
    assert!(report["reason"].as_str().unwrap().contains("no AWS auth marker"), "{report}");
    let error = &failure(run.get("chat", 0));
    assert_eq!(error["code"], "auth", "{error}");
    let message = error["message"].as_str().unwrap();
    for source in ["AWS_BEARER_TOKEN_BEDROCK", "AWS_ACCESS_KEY_ID", "shared config", "web identity", "IMDS"] {
        assert!(message.contains(source), "{source} missing from: {message}");
    }
    let run = run_child("none-enabled", "discover", &config(&emulator, json!({"enabled": true})), &env, || {});
    let failed = run.get("discover", 0);
    assert_eq!((failed["rc"].as_i64(), failed["error"]["code"].as_str()), (Some(3), Some("auth")), "{failed}");
    assert!(failed["error"]["message"].as_str().unwrap().contains("Tried, in order"), "{failed}");
    assert_eq!(emulator.stats().requests, 0, "nothing was sent unsigned");
}

fn rewritten_credentials_file_is_picked_up_after_expiry() {
    let emulator = Emulator::start(EmulatorConfig::default());
    let rotated = ("AKIAROTATED000000002", "rotated/secret/key/0002");
    let write = |key: &str, secret: &str| format!("[dev]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n");
    let mut env = shared_files("rotate", "[profile dev]\n", &write(TEST_ACCESS_KEY, TEST_SECRET_KEY));
    let credentials_file = env.iter().find(|(k, _)| *k == "AWS_SHARED_CREDENTIALS_FILE").unwrap().1.clone().unwrap();
    env.push(("AWS_PROFILE", some("dev")));
    let run = run_child("rotate", "chat,wait,chat,chat", &config(&emulator, json!({})), &env, || {
        // What `aws sso login` or a credentials refresher does while the gateway keeps serving.
        std::fs::write(&credentials_file, write(rotated.0, rotated.1)).unwrap();
        emulator.reconfigure(|c| {
            c.expired_access_keys = vec![c.access_key.clone()];
            c.access_key = rotated.0.into();
            c.secret_key = rotated.1.into();
        });
    });
    assert_done(run.get("chat", 0));
    assert_done(run.get("chat", 1));
    assert_done(run.get("chat", 2));
    let stats = emulator.stats();
    assert_eq!(stats.expired_token_rejections, 1, "one expired attempt, then fresh credentials for good");
    assert_eq!(stats.access_keys, [TEST_ACCESS_KEY, rotated.0]);
    assert!(run.stderr.contains("resolving them again"), "{}", run.stderr);
}

fn region_order() {
    let emulator = Emulator::start(EmulatorConfig::default());
    let keys = || vec![("AWS_ACCESS_KEY_ID", some(TEST_ACCESS_KEY)), ("AWS_SECRET_ACCESS_KEY", some(TEST_SECRET_KEY))];
    let cases: [(Vec<(&str, Option<String>)>, Value, &str, &str); 4] = [
        (vec![("AWS_REGION", some("ap-south-1")), ("AWS_DEFAULT_REGION", some("ca-central-1"))], json!({}), "ap-south-1", "AWS_REGION"),
        (vec![("AWS_DEFAULT_REGION", some("ca-central-1"))], json!({}), "ca-central-1", "AWS_DEFAULT_REGION"),
        (vec![], json!({}), "us-east-1", "default"),
        (vec![("AWS_REGION", some("ap-south-1"))], json!({"region": "eu-west-3"}), "eu-west-3", "discovery.region"),
    ];
    for (i, (extra, discovery, region, source)) in cases.into_iter().enumerate() {
        let mut env = keys();
        env.extend(extra);
        let run = run_child(&format!("region-{i}"), "refresh,chat", &config(&emulator, discovery), &env, || {});
        let report = &run.get("refresh", 0)["discovery"];
        assert_eq!((report["region"].as_str(), report["regionSource"].as_str()), (Some(region), Some(source)), "case {i}");
        assert_done(run.get("chat", 0));
        assert_eq!(emulator.stats().last_region.as_deref(), Some(region), "case {i}: streams go to the same region");
        assert!(run.stderr.contains(&format!("region {region} (from {source})")), "case {i}: {}", run.stderr);
    }
    // A named profile's region, after the environment and before the default (the SDK's order).
    let mut env = shared_files("region-profile", "[default]\nregion = us-west-1\n[profile work]\nregion = eu-central-1\n", "");
    env.retain(|(k, _)| *k != "AWS_REGION");
    env.extend(keys());
    env.push(("AWS_PROFILE", some("work")));
    let run = run_child("region-profile", "refresh,chat", &config(&emulator, json!({})), &env, || {});
    let report = &run.get("refresh", 0)["discovery"];
    assert_eq!((report["region"].as_str(), report["regionSource"].as_str()), (Some("eu-central-1"), Some("profile")));
    assert_done(run.get("chat", 0));
    assert_eq!(emulator.stats().last_region.as_deref(), Some("eu-central-1"));
    env.push(("AWS_DEFAULT_REGION", some("ca-central-1")));
    let run = run_child("region-profile-env", "refresh", &config(&emulator, json!({})), &env, || {});
    assert_eq!(run.get("refresh", 0)["discovery"]["regionSource"], "AWS_DEFAULT_REGION", "the environment comes first");
}

fn proxies_from_the_environment() {
    let emulator = Emulator::start(EmulatorConfig::default());
    let proxy = Proxy::start();
    let mut env = env_keys();
    env.push(("HTTP_PROXY", Some(proxy.url())));
    let run = run_child("proxy", "discover,chat", &config(&emulator, json!({})), &env, || {});
    assert_done(run.get("chat", 0));
    let seen = proxy.seen();
    let target = format!("http://127.0.0.1:{}", emulator.port());
    assert!(seen.iter().any(|l| l.starts_with(&format!("GET {target}/foundation-models"))), "{seen:?}");
    // The runtime and the control plane share one connection pool, so the chat may ride the
    // connection discovery opened (the proxy records each connection's first line): the
    // emulator's count says whether it came through the proxy.
    let stats = emulator.stats();
    assert_eq!(stats.converse_streams, 1);
    assert_eq!(stats.proxied, stats.requests, "every request went through the proxy");

    env.push(("NO_PROXY", some("127.0.0.1,localhost")));
    let before = (proxy.seen().len(), emulator.stats().proxied);
    let run = run_child("no-proxy", "chat", &config(&emulator, json!({})), &env, || {});
    assert_done(run.get("chat", 0));
    assert_eq!((proxy.seen().len(), emulator.stats().proxied), before, "NO_PROXY bypasses the proxy");

    // HTTPS goes through a CONNECT tunnel to the real endpoint (refused here: no network).
    let mut env = env_keys();
    env.push(("HTTPS_PROXY", Some(proxy.url())));
    let run = run_child("https-proxy", "chat", &json!({"provider": {"models": models()}, "discovery": {"enabled": false}}), &env, || {});
    assert_eq!(run.get("chat", 0)["type"], "error");
    let seen = proxy.seen();
    assert!(seen.iter().any(|l| l.starts_with("CONNECT bedrock-runtime.us-east-1.amazonaws.com:443")), "{seen:?}");

    // HTTP/1.1 only, chosen by pi-ai's switch in the environment (the plugin's own HTTP/1.1
    // client, not the SDK's): the same proxy rules. HTTPS through a CONNECT tunnel...
    let mut env = env_keys();
    env.push(("AWS_BEDROCK_FORCE_HTTP1", some("1")));
    env.push(("HTTPS_PROXY", Some(proxy.url())));
    let before = proxy.seen().len();
    let run = run_child("https-proxy-http1", "chat", &json!({"provider": {"models": models()}, "discovery": {"enabled": false}}), &env, || {});
    assert!(run.stderr.contains("HTTP/1.1 only"), "the switch took effect: {}", run.stderr);
    assert_eq!(run.get("chat", 0)["type"], "error");
    let seen = proxy.seen();
    assert!(seen[before..].iter().any(|l| l.starts_with("CONNECT bedrock-runtime.us-east-1.amazonaws.com:443")), "{seen:?}");
    // ... and NO_PROXY bypasses it.
    env.push(("HTTP_PROXY", Some(proxy.url())));
    env.push(("NO_PROXY", some("127.0.0.1,localhost")));
    let before = (proxy.seen().len(), emulator.stats().proxied);
    let run = run_child("no-proxy-http1", "chat", &config(&emulator, json!({})), &env, || {});
    assert_done(run.get("chat", 0));
    assert_eq!((proxy.seen().len(), emulator.stats().proxied), before, "NO_PROXY bypasses the proxy over HTTP/1.1 too");
}

/// `AWS_BEDROCK_SKIP_AUTH=1`: no identity needed, nothing signed, and a proxy in front of Bedrock
/// does the authenticating.
fn skip_auth_sends_unsigned_requests() {
    let emulator = Emulator::start(EmulatorConfig { allow_unsigned: true, ..EmulatorConfig::default() });
    let env = vec![("AWS_BEDROCK_SKIP_AUTH", some("1")), ("AWS_REGION", some("us-east-1")), ("AWS_PROFILE", some("ignored"))];
    let run = run_child("skip-auth", "chat,discover", &config(&emulator, json!({})), &env, || {});
    assert_done(run.get("chat", 0));
    let report = &run.get("discover", 0)["discovery"];
    assert_eq!(report["authSource"], json!({"kind": "unsigned", "origin": "AWS_BEDROCK_SKIP_AUTH=1", "ignored": ["AWS_PROFILE=ignored"]}));
    let stats = emulator.stats();
    assert!(stats.unsigned_ok >= 3, "the chat and the list calls went out unsigned ({})", stats.unsigned_ok);
    assert_eq!((stats.sigv4_ok, stats.bearer_ok, stats.auth_failures), (0, 0, 0), "nothing was signed");
    // The same emulator without allow_unsigned refuses them: nothing was signed.
    let strict = Emulator::start(EmulatorConfig::default());
    let run = run_child("skip-auth-strict", "chat", &config(&strict, json!({})), &env, || {});
    assert_eq!(failure(run.get("chat", 0))["code"], "auth");
}

/// The emulator serves HTTPS with a certificate from a test CA that no system trusts, as a
/// TLS-inspecting proxy does: refused cleanly without the CA, served once it is in a bundle.
fn tls_trusts_a_ca_bundle_and_refuses_an_untrusted_certificate() {
    let emulator = Emulator::start(EmulatorConfig { tls: true, ..EmulatorConfig::default() });
    assert!(emulator.endpoint().starts_with("https://"));
    let ca = bedrock_emulator::test_ca_path().display().to_string();
    let other = bedrock_emulator::other_ca_path().display().to_string();
    let untrusted = |run: &Run, why: &str| {
        let e = run.get("chat", 0);
        assert_eq!(failure(e)["code"], "network", "{why}: {e}");
        let said = e["error"]["errorMessage"].as_str().unwrap().to_lowercase();
        assert!(said.contains("certificate"), "{why}: the message names the certificate problem: {said}");
    };

    let run = run_child("tls-untrusted", "chat", &config(&emulator, json!({})), &env_keys(), || {});
    untrusted(&run, "the platform's roots alone");
    let mut env = env_keys();
    env.push(("AWS_CA_BUNDLE", some(&other)));
    untrusted(&run_child("tls-other-ca", "chat", &config(&emulator, json!({})), &env, || {}), "a bundle of another CA");

    // Trusted through AWS_CA_BUNDLE: streams and the control plane both go through.
    let mut env = env_keys();
    env.push(("AWS_CA_BUNDLE", some(&ca)));
    let run = run_child("tls-env-bundle", "chat,discover", &config(&emulator, json!({"enabled": true})), &env, || {});
    assert_done(run.get("chat", 0));
    assert!(!run.get("discover", 0)["models"].as_array().unwrap().is_empty(), "{}", run.get("discover", 0));
    assert!(run.stderr.contains(&format!("trusting the CAs in {ca} (AWS_CA_BUNDLE)")), "{}", run.stderr);

    // Trusted through provider.caBundle.
    let mut with_bundle = config(&emulator, json!({}));
    with_bundle["provider"]["caBundle"] = json!(ca);
    assert_done(run_child("tls-config-bundle", "chat", &with_bundle, &env_keys(), || {}).get("chat", 0));

    // A bundle that cannot be read is a config error naming the setting.
    with_bundle["provider"]["caBundle"] = json!("/nonexistent/ca.pem");
    let init = run_child("tls-missing-bundle", "chat", &with_bundle, &env_keys(), || {}).get("init", 0).clone();
    assert_eq!(init["rc"], 2, "{init}");
    assert!(init["error"]["message"].as_str().unwrap().starts_with("provider.caBundle: cannot read the CA bundle /nonexistent/ca.pem"), "{init}");
}

/// Every secret the plugin can hold, recognisable, through every kind of outcome (success,
/// throttling, refused signature, refused key, unreachable host, cleartext refusal), with debug
/// logging on: nothing the plugin emitted (events, errors, discovery reports, logs) contains one.
fn fake_secrets_never_appear_in_anything_the_plugin_emits() {
    const ACCESS: &str = "AKIALEAKCANARY000001";
    const SECRET: &str = "leak-canary-secret-key-0000000000000001";
    const TOKEN: &str = "leak-canary-session-token-000001";
    const BEARER: &str = "ABSKleakcanarybearertoken000001";
    let secrets = [ACCESS, SECRET, TOKEN, BEARER];
    let emulator = Emulator::start(EmulatorConfig {
        access_key: ACCESS.into(),
        secret_key: SECRET.into(),
        session_token: Some(TOKEN.into()),
        bearer_token: Some(BEARER.into()),
        ..EmulatorConfig::default()
    });
    let keys = |secret: &str| {
        vec![("AWS_ACCESS_KEY_ID", some(ACCESS)), ("AWS_SECRET_ACCESS_KEY", some(secret)), ("AWS_SESSION_TOKEN", some(TOKEN)), ("AWS_REGION", some("us-east-1")), ("BEDROCK_PLUGIN_LOG", some("debug"))]
    };
    let bearer = |key: &str| vec![("AWS_BEARER_TOKEN_BEDROCK", some(key)), ("AWS_REGION", some("us-east-1")), ("BEDROCK_PLUGIN_LOG", some("debug"))];
    let unreachable = json!({"provider": {"baseUrl": "http://127.0.0.1:9", "models": models()}, "discovery": {"enabled": true}});
    let remote_http = json!({"provider": {"baseUrl": "http://bedrock.example.com", "apiKey": BEARER, "models": models()}});
    let runs = [
        run_child("leak-keys", "chat,refresh", &config(&emulator, json!({})), &keys(SECRET), || {}),
        run_child("leak-wrong-secret", "chat,refresh", &config(&emulator, json!({})), &keys("leak-canary-wrong-secret-00000000000001"), || {}),
        run_child("leak-bearer", "chat,refresh", &config(&emulator, json!({})), &bearer(BEARER), || {}),
        run_child("leak-wrong-bearer", "chat,refresh", &config(&emulator, json!({})), &bearer("ABSKleakcanarywrongbearer00001"), || {}),
        run_child("leak-unreachable", "chat,refresh", &unreachable, &keys(SECRET), || {}),
        run_child("leak-cleartext", "chat", &remote_http, &bearer(BEARER), || {}),
    ];
    assert_done(runs[0].get("chat", 0));
    assert_done(runs[2].get("chat", 0));
    assert_eq!(failure(runs[1].get("chat", 0))["code"], "auth");
    assert_eq!(failure(runs[3].get("chat", 0))["code"], "auth");
    assert_eq!(failure(runs[4].get("chat", 0))["code"], "network");
    assert_eq!(runs[5].get("init", 0)["rc"], 2, "plain http to another host refused for the key");
    let throttled = run_child("leak-throttle", "chat", &config(&emulator, json!({})), &{ let mut e = keys(SECRET); e.push(("BP_MODEL", some("emulator.echo"))); e }, || {});
    for run in runs.iter().chain([&throttled]) {
        let all = run.everything();
        if run.get("init", 0)["rc"] == 0 {
            assert!(all.contains("bedrock-plugin: "), "debug logging was on: {all}");
        }
        for secret in secrets.iter().chain(["leak-canary-wrong-secret-00000000000001", "ABSKleakcanarywrongbearer00001"].iter()) {
            // The access key id names the identity in reports and is not a secret; everything else is.
            if *secret == ACCESS {
                continue;
            }
            assert!(!all.contains(secret), "a secret leaked: {secret}\n{all}");
            assert!(!all.contains(&secret[..16]), "a part of a secret leaked: {secret}\n{all}");
        }
    }
}
