//! `bp-host serve` as a gateway operator runs it: streams keep flowing while the plugin file is
//! replaced again and again by two different builds (this crate, version 0.1.0, and
//! `tests/plugin-next`, the same source as 0.1.0-next), and files that are not a usable plugin are
//! refused while the old one keeps serving. Old copies must leave the process's memory map, and
//! its threads and memory must come back. Prints the swap and drain times docs/hot-swap.md reports.

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROMPT: &str = "emulator: chunks=20 delay_ms=5";

fn expected_text() -> String {
    (0..20).map(|k| format!("w{k} ")).collect()
}

/// A scratch directory of this test's own under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = target_dir().join("serve-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A deployable copy of a plugin build: without debug info, as a shipped build would be.
fn shipped(build: &Path, to: &Path) -> PathBuf {
    let ok = Command::new("strip").arg("--strip-debug").arg("-o").arg(to).arg(build).status().map(|s| s.success()).unwrap_or(false);
    if !ok {
        std::fs::copy(build, to).unwrap();
    }
    to.to_path_buf()
}

/// The digest serve checks a build against, written beside the served path as `make install`
/// writes it (sha256sum's format), atomically.
fn write_digest(of: &Path, served: &Path) {
    let out = Command::new("sha256sum").arg(of).output().expect("sha256sum runs");
    assert!(out.status.success());
    let hex = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string();
    let name = served.file_name().unwrap().to_string_lossy();
    let digest = served.with_file_name(format!("{name}.sha256"));
    let tmp = served.with_file_name(format!(".{name}.sha256.incoming"));
    std::fs::write(&tmp, format!("{hex}  {name}\n")).unwrap();
    std::fs::rename(&tmp, &digest).unwrap();
}

/// The plugin deployed (stripped, with its digest) into a test's own directory: each serve
/// watches its own file, so one test's deploys never reach another test's gateway.
fn served_build(dir: &Path) -> PathBuf {
    let build = shipped(&plugin_path(), &dir.join("build.so"));
    let served = dir.join("libbedrock_plugin.so");
    deploy(&build, &served);
    served
}

/// A gateway's directory of a test's own: an emulator, the config pointing at it, and the plugin
/// deployed. Keep it for the test's length: the emulator stops when it is dropped.
struct Deployed {
    emulator: Emulator,
    dir: PathBuf,
    config: PathBuf,
    served: PathBuf,
}

fn deployed(name: &str) -> Deployed {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let dir = scratch(name);
    let config = dir.join("config.json");
    std::fs::write(&config, config_for(&emulator.endpoint()).to_string()).unwrap();
    let served = served_build(&dir);
    Deployed { emulator, dir, config, served }
}

/// Replaces the served file the way a deploy does: the digest first, then the build written
/// beside it and renamed over it.
fn deploy(from: &Path, served: &Path) {
    write_digest(from, served);
    let tmp = served.with_extension("incoming");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, served).unwrap();
}

/// One `bp-host serve` process on stdin/stdout.
struct Serve {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    fn start(served: &Path, config: &Path, copies: &Path, tool: Option<&[&str]>) -> Serve {
        Serve::start_with(served, config, copies, tool, &[])
    }

    /// Runs the host under `tool` (valgrind) with the plain build, else the ASan + UBSan build;
    /// an empty `tool` runs the plain build as it is (for figures ASan would distort: RSS).
    fn start_with(served: &Path, config: &Path, copies: &Path, tool: Option<&[&str]>, extra: &[&str]) -> Serve {
        let mut command = match tool {
            Some([]) => Command::new(build_host()),
            Some(tool) => {
                let mut c = Command::new(tool[0]);
                c.args(&tool[1..]).arg(build_host());
                c
            }
            None => {
                let mut c = Command::new(build_host_asan());
                c.envs(SANITIZERS);
                c
            }
        };
        let mut child = command
            .arg("--plugin").arg(served).arg("--config").arg(config).args(["serve", "--drain-ms", "30000"]).args(extra)
            .env("TMPDIR", copies)
            .stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped())
            .spawn()
            .expect("start bp-host serve");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("serve wrote a line that is not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let stdin = child.stdin.take();
        Serve { child, stdin, lines, stderr }
    }

    fn send(&mut self, line: &Value) {
        self.send_raw(&line.to_string());
    }

    /// A line as written, JSON or not.
    fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `found` finds something in the log. Log lines travel on stderr, apart from
    /// the answers on stdout, so a status that reports an event can arrive before its log line.
    fn wait_log(&self, what: &str, found: impl Fn(&str) -> Option<String>) -> String {
        let started = Instant::now();
        loop {
            let log = self.stderr();
            if let Some(hit) = found(&log) {
                return hit;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{what} not logged in 10 s:\n{log}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes stdin and waits for the process to finish its streams and exit.
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50)); // let the stderr reader catch up
                return (status, self.stderr());
            }
            assert!(Instant::now() < deadline, "bp-host serve did not exit: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} missing"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The generation numbers of plugin copies still mapped into the process.
fn mapped_generations(pid: u32) -> Vec<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut found: Vec<u64> = maps
        .lines()
        .filter_map(|l| l.split("/generation-").nth(1))
        .filter_map(|rest| rest.split(".so").next())
        .filter_map(|n| n.parse().ok())
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// Everything a request produced, by id.
#[derive(Default)]
struct Outcome {
    generation: Option<u64>,
    text: String,
    terminals: Vec<Value>,
    start_errors: usize,
    /// Generations that may serve it: the one serving when it was sent, and the next while a
    /// swap was under way.
    allowed: Vec<u64>,
}

/// Drives the gateway: keeps `in_flight` streams going, answers status queries.
struct Load {
    outcomes: HashMap<String, Outcome>,
    open: usize,
    next: usize,
    versions: HashMap<u64, String>,
}

impl Load {
    fn new() -> Load {
        Load { outcomes: HashMap::new(), open: 0, next: 0, versions: HashMap::new() }
    }

    fn launch(&mut self, serve: &mut Serve, allowed: Vec<u64>) {
        let id = format!("r{}", self.next);
        self.next += 1;
        let mut line = request("emulator.echo", PROMPT, json!({}));
        line["id"] = json!(id);
        serve.send(&line);
        self.outcomes.insert(id, Outcome { allowed, ..Default::default() });
        self.open += 1;
    }

    /// Takes one line; returns a status answer if it was one.
    fn take(&mut self, v: Value) -> Option<Value> {
        if v["op"] == "status" {
            for g in v["generations"].as_array().unwrap() {
                self.versions.insert(g["generation"].as_u64().unwrap(), g["plugin"]["version"].as_str().unwrap().to_string());
            }
            return Some(v);
        }
        let id = v["id"].as_str().unwrap_or_else(|| panic!("unexpected line: {v}")).to_string();
        let o = self.outcomes.get_mut(&id).unwrap_or_else(|| panic!("a line for an unknown request: {v}"));
        let generation = v["generation"].as_u64().unwrap();
        assert_eq!(*o.generation.get_or_insert(generation), generation, "one request, one generation: {v}");
        if v.get("startError").is_some() {
            o.start_errors += 1;
            self.open -= 1;
            return None;
        }
        let event = &v["event"];
        if event["type"] == "text_delta" {
            o.text.push_str(event["delta"].as_str().unwrap());
        }
        if is_terminal(event) {
            o.terminals.push(event.clone());
            self.open -= 1;
        }
        None
    }

    /// Reads lines until a status answer arrives, keeping `in_flight` streams going.
    fn status(&mut self, serve: &mut Serve, in_flight: usize, allowed: &[u64]) -> Value {
        serve.send(&json!({"op": "status"}));
        loop {
            while self.open < in_flight {
                self.launch(serve, allowed.to_vec());
            }
            match serve.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(v) => {
                    if let Some(status) = self.take(v) {
                        return status;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("no output for 60 s; stderr:\n{}", serve.stderr()),
                Err(RecvTimeoutError::Disconnected) => panic!("serve exited; stderr:\n{}", serve.stderr()),
            }
        }
    }

    /// Keeps the load going while polling status until `until` holds.
    fn status_until(&mut self, serve: &mut Serve, in_flight: usize, allowed: &[u64], what: &str, until: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.status(serve, in_flight, allowed);
            if until(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "{what}: not reached in 60 s; last status {status}; stderr:\n{}", serve.stderr());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reads lines until every request launched so far has ended.
    fn wait_idle(&mut self, serve: &mut Serve) {
        while self.open > 0 {
            match serve.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(v) => assert!(self.take(v).is_none(), "no status was asked for"),
                Err(e) => panic!("waiting for {} streams: {e:?}; stderr:\n{}", self.open, serve.stderr()),
            }
        }
    }

    /// Every request finished once, with the full text, on a generation it was allowed to use.
    fn check(&self) {
        for (id, o) in &self.outcomes {
            assert_eq!(o.start_errors, 0, "{id} could not start");
            assert_eq!(o.terminals.len(), 1, "{id}: exactly one terminal event: {:?}", o.terminals);
            assert_eq!(o.terminals[0]["type"], "done", "{id}: {}", o.terminals[0]);
            assert_eq!(o.text, expected_text(), "{id}: the full, exact text");
            let generation = o.generation.unwrap();
            assert!(o.allowed.contains(&generation), "{id} ran on generation {generation}, allowed {:?}", o.allowed);
        }
    }
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[((values.len() - 1) as f64 * p).round() as usize]
}

/// What a run of swaps under load measured.
struct SwapRun {
    ready_ms: Vec<f64>,
    drain_ms: Vec<f64>,
    requests: usize,
    threads: (u64, u64),
    rss_kib: (u64, u64),
    loads: u64,
    stderr: String,
}

/// Swaps `swaps` times between the two builds by rewriting the served file while `in_flight`
/// streams run, then once more with no load; checks every request, the versions, the memory map
/// and the thread count, and returns the figures. `tool` runs the host under a checker.
fn swaps_under_load(name: &str, swaps: u64, in_flight: usize, tool: Option<&[&str]>) -> SwapRun {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let dir = scratch(name);
    let builds = [
        (shipped(&plugin_path(), &dir.join("a.so")), "0.1.0"),
        (shipped(&next_plugin_path(), &dir.join("b.so")), "0.1.0-next"),
    ];
    let served = dir.join("libbedrock_plugin.so");
    deploy(&builds[0].0, &served);
    let config = dir.join("config.json");
    std::fs::write(&config, config_for(&emulator.endpoint()).to_string()).unwrap();

    let mut serve = Serve::start(&served, &config, &scratch(&format!("{name}-copies")), tool);
    let mut load = Load::new();
    let first = load.status_until(&mut serve, 0, &[1], "first generation", |s| s["generation"] == 1);
    assert_eq!(first["plugin"]["version"], "0.1.0");
    let pid = serve.pid();
    let (threads_before, rss_before) = (proc_status_field(pid, "Threads:"), proc_status_field(pid, "VmRSS:"));

    let mut ready_ms = Vec::new();
    for swap in 1..=swaps {
        let (old, new) = (swap, swap + 1);
        // Let the current generation carry the load for a moment, so the swap meets streams.
        load.status_until(&mut serve, in_flight, &[old], "load before the swap", |s| s["generations"][0]["streams"].as_u64() >= Some(in_flight as u64 / 2));
        let (build, version) = &builds[(swap % 2) as usize];
        let changed = Instant::now();
        deploy(build, &served);
        let status = load.status_until(&mut serve, in_flight, &[old, new], "the new generation serving", |s| s["generation"] == new);
        ready_ms.push(changed.elapsed().as_secs_f64() * 1e3);
        assert_eq!(status["plugin"]["version"], *version, "swap {swap} serves the build just deployed");
        assert_eq!(status["swaps"], swap);
        // Requests sent from now on must all run on the new generation.
        load.status(&mut serve, in_flight, &[new]);
    }
    // Let the load end, then one idle swap: the serving generation is as fresh as at the start.
    load.wait_idle(&mut serve);
    let loaded = swaps + 1;
    let idle = loaded + 1;
    deploy(&builds[(idle % 2 == 0) as usize].0, &served);
    let last = load.status_until(&mut serve, 0, &[idle], "idle swap done and every old copy unloaded", |s| {
        s["generation"] == idle && s["oldStillMapped"] == 0 && s["unloaded"] == loaded
    });
    load.check();
    // Issue #17: each unloaded copy gave its pthread key back (before, one key leaked per load).
    let keys = |s: &Value| s["headroom"]["freePthreadKeys"].as_u64().unwrap_or_else(|| panic!("status reports its headroom: {s}"));
    assert!(keys(&last) + 1 >= keys(&first), "pthread keys flat over {idle} loads: {} → {}", keys(&first), keys(&last));
    for (generation, version) in &load.versions {
        let expected = if generation % 2 == 1 { "0.1.0" } else { "0.1.0-next" };
        assert_eq!(version, expected, "generation {generation} runs the build deployed for it");
    }
    assert_eq!(mapped_generations(pid), [idle], "only the serving copy is mapped");
    let mut threads_after = proc_status_field(pid, "Threads:");
    let settle = Instant::now();
    while threads_after != threads_before && settle.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        threads_after = proc_status_field(pid, "Threads:");
    }
    assert_eq!(threads_after, threads_before, "threads back to where they started");
    let rss_after = proc_status_field(pid, "VmRSS:");
    let requests = load.outcomes.len();
    assert!(emulator.stats().converse_streams >= requests as u64);

    let (status, stderr) = serve.finish();
    assert!(status.success(), "{status:?}\n{stderr}");
    let drain_ms: Vec<f64> = stderr
        .lines()
        .filter(|l| l.contains(" drained in ") && !l.contains("(0 streams"))
        .filter_map(|l| l.split(" drained in ").nth(1)?.split(" ms").next()?.parse().ok())
        .collect();
    SwapRun { ready_ms, drain_ms, requests, threads: (threads_before, threads_after), rss_kib: (rss_before, rss_after), loads: idle, stderr }
}

#[test]
fn fifty_swaps_under_load_lose_nothing_and_leave_nothing_behind() {
    const SWAPS: u64 = 50;
    const IN_FLIGHT: usize = 20;
    // The plain build: ASan's shadow memory and quarantine would swamp the RSS figure.
    let mut run = swaps_under_load("swaps", SWAPS, IN_FLIGHT, Some(&[]));
    let growth_mib = (run.rss_kib.1 as f64 - run.rss_kib.0 as f64) / 1024.0;
    assert!(run.drain_ms.len() as u64 >= SWAPS * 9 / 10, "most swaps met streams in flight: {:?}", run.drain_ms);
    let settling = run.stderr.matches("swap waits for the file to settle").count();
    println!(
        "serve: {SWAPS} swaps under {IN_FLIGHT} streams in flight, {} requests, all exact; change → new generation serving: median {:.0} ms, p95 {:.0} ms, max {:.0} ms (100 ms of it waiting for the file to settle); drain of the old generation with streams in flight: median {:.0} ms, max {:.0} ms; threads {} → {}; RSS {} → {} KiB ({growth_mib:+.1} MiB over {} loads); looks at a file still settling {}, file events for the build already serving {}",
        run.requests,
        percentile(&mut run.ready_ms.clone(), 0.5),
        percentile(&mut run.ready_ms.clone(), 0.95),
        percentile(&mut run.ready_ms, 1.0),
        percentile(&mut run.drain_ms.clone(), 0.5),
        percentile(&mut run.drain_ms, 1.0),
        run.threads.0,
        run.threads.1,
        run.rss_kib.0,
        run.rss_kib.1,
        run.loads,
        settling,
        run.stderr.matches("; no swap").count(),
    );
    // A deploy here writes the digest, then the build beside its name, then renames it over. The
    // watcher took the temporary file's close as quiet and looked before the rename: 46 of 51
    // swaps met a build still settling (and now and then the rename's event, still queued, made a
    // second generation of the build just loaded). A slow copy can still outlast the 100 ms.
    assert!(settling <= SWAPS as usize / 5, "{settling} of {SWAPS} swaps looked at the file before its deploy was done");
    assert!(growth_mib < 64.0, "RSS grew {growth_mib:.1} MiB over {} loads", run.loads);
}

/// Issue #17: the 1,023rd swap aborted the gateway (each loaded copy kept a pthread key), and
/// each swap left ~270 KiB behind (the SDK's statics). 1,100 swaps by SIGHUP in one
/// `bp-host serve` process with streams kept in flight (~5 min): every request exact, free
/// pthread keys flat, RSS growth per swap within 16 KiB (amortised, after the first 100 swaps
/// have warmed the allocator and the thread caches), only the serving copy mapped at the end.
#[test]
fn eleven_hundred_swaps_in_one_gateway_keep_pthread_keys_and_memory_flat() {
    endurance(1100, &[100, 550, 1100]);
}

/// The 10,000-swap run of the README's figures (~45 min; outside the test command):
/// `cargo test --release --test serve ten_thousand -- --ignored --nocapture`.
#[test]
#[ignore]
fn ten_thousand_swaps_in_one_gateway() {
    endurance(10_000, &[1000, 5000, 10_000]);
}

/// Swaps `swaps` times by SIGHUP with 4 streams in flight; prints swaps/min, SIGHUP → serving
/// median / p95, and free keys and RSS at the start, after swap 100 and at each checkpoint.
fn endurance(swaps: u64, checkpoints: &[u64]) {
    let Deployed { emulator: _emulator, config, served, .. } = deployed(&format!("endurance-{swaps}"));
    let mut serve = Serve::start_with(&served, &config, &scratch(&format!("endurance-{swaps}-copies")), Some(&[]), &[]);
    let mut load = Load::new();
    let first = load.status_until(&mut serve, 0, &[1], "first generation", |s| s["generation"] == 1);
    let keys = |s: &Value| s["headroom"]["freePthreadKeys"].as_u64().unwrap();
    let rss = |s: &Value| s["headroom"]["rssKiB"].as_u64().unwrap();
    let pid = serve.pid() as libc::pid_t;
    const WARM: u64 = 100;
    let started = Instant::now();
    let mut figures = vec![(0, keys(&first), rss(&first))];
    let mut to_serving = Vec::new();
    for swap in 1..=swaps {
        let sent = Instant::now();
        unsafe { libc::kill(pid, libc::SIGHUP) };
        let status = load.status_until(&mut serve, 4, &[swap, swap + 1], "the swap", |s| s["generation"] == swap + 1);
        to_serving.push(sent.elapsed().as_secs_f64() * 1000.0);
        if swap == WARM || checkpoints.contains(&swap) {
            figures.push((swap, keys(&status), rss(&status)));
        }
    }
    load.wait_idle(&mut serve);
    let last = load.status_until(&mut serve, 0, &[swaps + 1], "every old copy unloaded", |s| s["oldStillMapped"] == 0 && s["unloaded"] == swaps);
    load.check();
    assert_eq!(mapped_generations(serve.pid()), [swaps + 1], "only the serving copy is mapped");
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let warm = figures.iter().find(|f| f.0 == WARM).unwrap().2;
    let per_swap = (rss(&last) as f64 - warm as f64) / (swaps - WARM) as f64;
    eprintln!(
        "{swaps} swaps by SIGHUP with 4 streams in flight: {:.0} swaps/min, {} requests exact; SIGHUP → serving median {:.1} ms, p95 {:.1} ms",
        swaps as f64 / minutes,
        load.outcomes.len(),
        percentile(&mut to_serving.clone(), 0.5),
        percentile(&mut to_serving, 0.95),
    );
    for (swap, k, r) in &figures {
        eprintln!("  after {swap:>6} swaps: free pthread keys {k}, RSS {r} KiB");
    }
    eprintln!("  at rest after {swaps}: free pthread keys {}, RSS {} KiB; growth after swap {WARM}: {per_swap:.1} KiB per swap", keys(&last), rss(&last));
    assert!(keys(&last) + 1 >= keys(&first), "pthread keys flat: {} → {}", keys(&first), keys(&last));
    assert!(per_swap <= 16.0, "RSS growth {per_swap:.1} KiB per swap (target 16): {figures:?}, {} KiB at the end", rss(&last));
    let (status, stderr) = serve.finish();
    assert!(status.success(), "{stderr}");
}

/// Memory errors across swaps (a stream's last callback racing the unload, a handle released
/// through the wrong copy) show up here as invalid reads or writes.
#[test]
fn five_swaps_under_load_are_clean_under_valgrind() {
    let tool: &[&str] = &["valgrind", "--error-exitcode=99", "--leak-check=no", "--fair-sched=yes"];
    let run = swaps_under_load("valgrind", 5, 4, Some(tool));
    assert!(run.stderr.contains("ERROR SUMMARY: 0 errors"), "{}", run.stderr);
    println!("serve under valgrind: 5 swaps, {} requests, 0 errors", run.requests);
}

/// Each bad file is refused with its reason in the log while generation 1 keeps serving; a good
/// build deployed afterwards is taken.
#[test]
fn files_that_are_not_a_usable_plugin_are_refused_while_the_old_one_serves() {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let dir = scratch("refusals");
    let good = shipped(&plugin_path(), &dir.join("good.so"));
    let served = dir.join("libbedrock_plugin.so");
    deploy(&good, &served);
    let config = dir.join("config.json");
    std::fs::write(&config, config_for(&emulator.endpoint()).to_string()).unwrap();

    let abi2 = dir.join("abi2.so");
    let built = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o"])
        .arg(&abi2)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/c/abi2_plugin.c"))
        .status()
        .expect("cc runs");
    assert!(built.success());
    let truncated = dir.join("truncated.so");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let text = dir.join("notes.so");
    std::fs::write(&text, "this is not a shared object\n").unwrap();

    let mut serve = Serve::start(&served, &config, &scratch("refusals-copies"), None);
    let mut load = Load::new();
    load.status_until(&mut serve, 0, &[1], "first generation", |s| s["generation"] == 1);
    let cases = [
        (&abi2, "plugin ABI 2.0; this host speaks 1.x"),
        (&truncated, "the file is truncated"),
        (&text, "not a shared object (no ELF header)"),
    ];
    for (refused, (file, reason)) in cases.iter().enumerate() {
        deploy(file, &served);
        let status = load.status_until(&mut serve, 2, &[1], "the refusal", |s| s["refused"] == refused as u64 + 1);
        assert_eq!((status["generation"].as_u64(), status["swaps"].as_u64()), (Some(1), Some(0)), "{status}");
        let line = serve.wait_log("the refusal's log line", |log| log.lines().filter(|l| l.contains("swap refused")).nth(refused).map(str::to_string));
        assert!(line.contains("generation 1 keeps serving") && line.contains(reason), "{}: {line}", file.display());
    }
    load.wait_idle(&mut serve);
    // A build other than the one serving: the same one again would be no swap.
    let other = shipped(&next_plugin_path(), &dir.join("other.so"));
    deploy(&other, &served);
    load.status_until(&mut serve, 2, &[1, 2], "the good build", |s| s["generation"] == 2 && s["unloaded"] == 1);
    load.wait_idle(&mut serve);
    load.check();
    assert!(load.outcomes.len() >= 6, "streams ran throughout ({} requests)", load.outcomes.len());
    let (status, stderr) = serve.finish();
    assert!(status.success(), "{stderr}");
}

/// A file event for the build already serving is no swap. A deploy's rename could still be
/// queued when the watcher had already loaded the renamed file, and the next look made a second
/// generation of the same build: its streams drained for nothing, and the swap test saw
/// generation n + 1 run build n (CI, stop 26). Redeploying the same bytes, or rewriting only the
/// digest, is the same event on purpose; SIGHUP still reloads the same build when asked.
#[test]
fn a_file_event_for_the_serving_build_is_no_swap() {
    let Deployed { emulator: _emulator, dir, config, served } = deployed("unchanged");
    let build = dir.join("build.so");
    let mut serve = Serve::start(&served, &config, &scratch("unchanged-copies"), None);
    let mut load = Load::new();
    load.status_until(&mut serve, 0, &[1], "first generation", |s| s["generation"] == 1);
    let unchanged = |serve: &Serve, nth: usize| {
        serve.wait_log("no swap for the serving build", |log| log.lines().filter(|l| l.contains("; no swap")).nth(nth).map(str::to_string))
    };
    deploy(&build, &served);
    let line = unchanged(&serve, 0);
    assert!(line.contains("holds the build generation 1 serves"), "{line}");
    write_digest(&build, &served);
    unchanged(&serve, 1);
    let status = load.status(&mut serve, 2, &[1]);
    assert_eq!((status["generation"].as_u64(), status["swaps"].as_u64(), status["refused"].as_u64()), (Some(1), Some(0), Some(0)), "{status}");
    load.wait_idle(&mut serve);
    unsafe { libc::kill(serve.pid() as libc::pid_t, libc::SIGHUP) };
    load.status_until(&mut serve, 0, &[1, 2], "the reload asked for", |s| s["generation"] == 2 && s["unloaded"] == 1);
    load.check();
    let (status, stderr) = serve.finish();
    assert!(status.success(), "{stderr}");
}

/// Issue #17 item 3: a build is loaded only if it is the one consistent build its digest names.
/// A file made of the first half (then 90%) of one build and the rest of another crashed the
/// gateway (SIGSEGV) or loaded a corrupt image; now each is refused with its reason, as is a build
/// without a digest, while generation 1 keeps serving exact streams.
#[test]
fn a_build_that_is_not_the_one_its_digest_names_is_refused() {
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let dir = scratch("digests");
    let a = shipped(&plugin_path(), &dir.join("a.so"));
    let b = shipped(&next_plugin_path(), &dir.join("b.so"));
    let served = dir.join("libbedrock_plugin.so");
    deploy(&a, &served);
    let config = dir.join("config.json");
    std::fs::write(&config, config_for(&emulator.endpoint()).to_string()).unwrap();
    let (bytes_a, bytes_b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let mix = |share: usize| -> PathBuf {
        let cut = bytes_a.len() * share / 100;
        let mut mixed = bytes_a[..cut].to_vec();
        mixed.extend_from_slice(&bytes_b[cut.min(bytes_b.len())..]);
        let path = dir.join(format!("mix-{share}.so"));
        std::fs::write(&path, mixed).unwrap();
        path
    };
    let mut serve = Serve::start(&served, &config, &scratch("digests-copies"), None);
    let mut load = Load::new();
    load.status_until(&mut serve, 0, &[1], "first generation", |s| s["generation"] == 1);
    let mut refused = 0;
    for share in [50, 90] {
        // What an interrupted deploy leaves: the digest of the build meant, a mixed file.
        write_digest(&a, &served);
        let tmp = served.with_extension("incoming");
        std::fs::copy(mix(share), &tmp).unwrap();
        std::fs::rename(&tmp, &served).unwrap();
        refused += 1;
        load.status_until(&mut serve, 2, &[1], "the refusal", |s| s["refused"].as_u64() >= Some(refused));
        let line = serve.wait_log("the refusal's log line", |log| log.lines().filter(|l| l.contains("swap refused")).nth(refused as usize - 1).map(str::to_string));
        assert!(line.contains("generation 1 keeps serving") && line.contains("a mix of two builds"), "{share}% mix: {line}");
    }
    // No digest at all: refused too.
    std::fs::remove_file(dir.join("libbedrock_plugin.so.sha256")).unwrap();
    let tmp = served.with_extension("incoming");
    std::fs::copy(&b, &tmp).unwrap();
    std::fs::rename(&tmp, &served).unwrap();
    let status = load.status_until(&mut serve, 2, &[1], "the refusal", |s| s["refused"].as_u64() >= Some(refused + 1));
    assert_eq!(status["generation"], 1, "{status}");
    serve.wait_log("the missing digest", |log| log.lines().find(|l| l.contains("swap refused") && l.contains("no digest beside it")).map(str::to_string));
    // A whole build with its digest is taken.
    deploy(&b, &served);
    load.status_until(&mut serve, 2, &[1, 2], "build b", |s| s["generation"] == 2 && s["plugin"]["version"] == "0.1.0-next");
    load.wait_idle(&mut serve);
    load.check();
    let (status, stderr) = serve.finish();
    assert!(status.success(), "{stderr}");
}

/// Issue #17 item 3: a build written in place without truncating first (rsync --inplace, dd
/// conv=notrunc) while swaps fire crashed the gateway. 100 rounds: the other build is written
/// over the served file in chunks, in place, with SIGHUP between chunks; every load is a whole
/// build (its version is one of the two), the half-written states are refused, and the streams
/// kept in flight are exact.
#[test]
fn in_place_writes_racing_swaps_never_load_a_mixed_build() {
    use std::io::{Seek, SeekFrom};
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let dir = scratch("inplace");
    let builds = [shipped(&plugin_path(), &dir.join("a.so")), shipped(&next_plugin_path(), &dir.join("b.so"))];
    let bytes: Vec<Vec<u8>> = builds.iter().map(|b| std::fs::read(b).unwrap()).collect();
    let served = dir.join("libbedrock_plugin.so");
    deploy(&builds[0], &served);
    let config = dir.join("config.json");
    std::fs::write(&config, config_for(&emulator.endpoint()).to_string()).unwrap();
    let mut serve = Serve::start_with(&served, &config, &scratch("inplace-copies"), Some(&[]), &[]);
    let mut load = Load::new();
    load.status_until(&mut serve, 0, &[1], "first generation", |s| s["generation"] == 1);
    let pid = serve.pid() as libc::pid_t;
    const ROUNDS: usize = 100;
    let mut generation = 1;
    for round in 0..ROUNDS {
        let next = &bytes[(round + 1) % 2];
        write_digest(&builds[(round + 1) % 2], &served);
        let mut file = std::fs::OpenOptions::new().write(true).open(&served).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        // Slower than serve's 100 ms settle: the swaps meet the file half-written.
        for chunk in next.chunks(next.len() / 10 + 1) {
            file.write_all(chunk).unwrap();
            file.flush().unwrap();
            unsafe { libc::kill(pid, libc::SIGHUP) };
            std::thread::sleep(Duration::from_millis(25));
        }
        file.set_len(next.len() as u64).unwrap();
        drop(file);
        generation += 1;
        let want = generation;
        load.status_until(&mut serve, 4, &(1..=want).collect::<Vec<_>>(), "the whole build", |s| s["generation"].as_u64() >= Some(want));
        let status = load.status(&mut serve, 4, &(1..=want + 1).collect::<Vec<_>>());
        generation = status["generation"].as_u64().unwrap();
    }
    load.wait_idle(&mut serve);
    load.check();
    for (g, version) in &load.versions {
        assert!(version == "0.1.0" || version == "0.1.0-next", "generation {g} reported {version:?}: a corrupt image was loaded");
    }
    let (status, stderr) = serve.finish();
    assert!(status.success(), "the gateway survived every round: {stderr}");
    let waits = stderr.lines().filter(|l| l.contains("swap waits for the file to settle")).count();
    let refusals = stderr.lines().filter(|l| l.contains("swap refused")).count();
    eprintln!("{ROUNDS} rounds of in-place writes racing swaps: {generation} generations loaded, {waits} half-written states seen and not loaded ({refusals} reported as refused), {} requests exact", load.outcomes.len());
    assert!(waits > ROUNDS / 2, "the swaps met half-written files ({waits} times)");
}

/// The requests, cancels and control lines a client can send, and what each one gets back.
#[test]
fn the_line_protocol_answers_every_kind_of_line() {
    let Deployed { emulator: _emulator, config, served, .. } = deployed("protocol");
    let mut serve = Serve::start(&served, &config, &scratch("protocol-copies"), None);
    let mut long = request("emulator.echo", "emulator: chunks=500 delay_ms=20", json!({}));
    long["id"] = json!("long");
    serve.send(&long);
    let mut unknown = request("no.such-model", "hi", json!({}));
    unknown["id"] = json!("unknown");
    serve.send(&unknown);
    serve.send(&json!({"model": "emulator.echo", "context": {"messages": []}}));
    serve.send(&json!({"op": "dance"}));
    serve.send(&json!({"cancel": "nobody"}));
    serve.send(&json!({"op": "models"}));
    // Lines that end inside a string or an escape (they read past the line's end before: ASan
    // runs this host), an unterminated id and cancel, and a line longer than any request.
    for raw in [r#"{"op":"st\"#, r#"{"op":"\u"#, r#"{"op":"\u12"#, r#"{"id":"unterminated"#, r#"{"cancel":"x\"#] {
        serve.send_raw(raw);
    }
    serve.send_raw(&"x".repeat((32 << 20) + (1 << 20) + 10));
    let mut seen: Vec<Value> = Vec::new();
    let next = |serve: &Serve| serve.lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e:?}: {}", serve.stderr()));
    while seen.iter().filter(|v| v.get("event").is_none()).count() < 11 {
        seen.push(next(&serve));
    }
    serve.send(&json!({"cancel": "long"}));
    loop {
        let v = next(&serve);
        let done = v["id"] == "long" && is_terminal(&v["event"]);
        seen.push(v);
        if done {
            break;
        }
    }
    let find = |pred: &dyn Fn(&Value) -> bool| seen.iter().find(|v| pred(v)).cloned().unwrap_or_else(|| panic!("missing in {seen:?}"));
    let start_error = find(&|v| v["id"] == "unknown");
    assert_eq!((start_error["generation"].as_u64(), start_error["startError"]["code"].as_str()), (Some(1), Some("not_found")), "{start_error}");
    assert!(find(&|v| v["error"].as_str().is_some_and(|e| e.contains("string \"id\""))).is_object());
    assert!(find(&|v| v["error"].as_str().is_some_and(|e| e.contains("unknown op"))).is_object());
    assert_eq!(seen.iter().filter(|v| v["error"].as_str().is_some_and(|e| e.contains("unknown op"))).count(), 4, "{seen:?}");
    assert_eq!(seen.iter().filter(|v| v["error"].as_str().is_some_and(|e| e.contains("string \"id\""))).count(), 2, "{seen:?}");
    assert!(find(&|v| v["cancel"].is_null() && v["error"].is_string()).is_object(), "the unterminated cancel is not echoed raw");
    assert!(find(&|v| v["error"].as_str().is_some_and(|e| e.starts_with("line too long"))).is_object());
    assert_eq!(find(&|v| v["cancel"] == "nobody")["error"], "no stream of this client is in flight with this id");
    let models = find(&|v| v["op"] == "models");
    assert!(models["result"]["models"].as_array().is_some_and(|m| m.iter().any(|m| m["id"] == "emulator.echo")), "{models}");
    let cancelled = seen.iter().rev().find(|v| v["id"] == "long").unwrap();
    assert_eq!((cancelled["event"]["reason"].as_str(), failure(&cancelled["event"])["code"].as_str()), (Some("aborted"), Some("cancelled")));
    let (status, _) = serve.finish();
    assert!(status.success());
}

/// A client of the socket mode: sends lines, reads the lines meant for it.
struct SocketClient {
    out: std::os::unix::net::UnixStream,
    lines: std::io::Lines<BufReader<std::os::unix::net::UnixStream>>,
}

impl SocketClient {
    fn connect(path: &Path) -> SocketClient {
        let out = std::os::unix::net::UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        out.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let lines = BufReader::new(out.try_clone().unwrap()).lines();
        SocketClient { out, lines }
    }

    fn send(&mut self, line: &Value) {
        writeln!(self.out, "{line}").unwrap();
    }

    fn next(&mut self) -> Value {
        serde_json::from_str(&self.lines.next().expect("a line").expect("read a line")).unwrap()
    }

    /// Sends requests with these ids and returns each one's text once all have ended.
    fn chat(&mut self, ids: &[&str]) -> HashMap<String, String> {
        for id in ids {
            let mut line = request("emulator.echo", PROMPT, json!({}));
            line["id"] = json!(id);
            self.send(&line);
        }
        let mut texts: HashMap<String, String> = HashMap::new();
        let mut ended = 0;
        while ended < ids.len() {
            let v = self.next();
            let id = v["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_string();
            assert!(ids.contains(&id.as_str()), "a line for another client's request: {v}");
            let text = texts.entry(id).or_default();
            match v["event"]["type"].as_str() {
                Some("text_delta") => text.push_str(v["event"]["delta"].as_str().unwrap()),
                Some("done") => ended += 1,
                _ => assert!(!is_terminal(&v["event"]), "{v}"),
            }
        }
        texts
    }
}

/// An emulator, and `bp-host serve` for it on a Unix socket that accepts connections.
fn serve_on_socket(name: &str, extra: &[&str]) -> (Emulator, Serve, PathBuf) {
    let Deployed { emulator, dir, config, served } = deployed(name);
    let socket = dir.join("serve.sock");
    let args: Vec<&str> = ["--socket", socket.to_str().unwrap()].into_iter().chain(extra.iter().copied()).collect();
    let serve = Serve::start_with(&served, &config, &scratch(&format!("{name}-copies")), None, &args);
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "no socket: {}", serve.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    (emulator, serve, socket)
}

#[test]
fn a_unix_socket_serves_many_clients_at_once_and_signals_swap_and_stop() {
    let (emulator, serve, socket) = serve_on_socket("socket", &[]);

    // Four clients at once, all using the same ids: each sees only its own streams.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || SocketClient::connect(&socket).chat(&["a", "b", "c"]))
        })
        .collect();
    for c in clients {
        let texts = c.join().unwrap();
        assert_eq!(texts.len(), 3);
        assert!(texts.values().all(|t| *t == expected_text()), "{texts:?}");
    }

    // A client that goes away mid-stream: its stream is cancelled, not left running.
    let mut leaving = SocketClient::connect(&socket);
    let mut long = request("emulator.echo", "emulator: chunks=500 delay_ms=20", json!({}));
    long["id"] = json!("long");
    leaving.send(&long);
    assert_eq!(leaving.next()["event"]["type"], "start");
    drop(leaving);
    let gone = Instant::now();
    while emulator.stats().open_streams > 0 {
        assert!(gone.elapsed() < Duration::from_secs(5), "the departed client's stream still runs");
        std::thread::sleep(Duration::from_millis(20));
    }

    // SIGHUP swaps; status over a new connection shows the second generation.
    let pid = serve.pid() as libc::pid_t;
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let mut control = SocketClient::connect(&socket);
    let swapped = Instant::now();
    loop {
        control.send(&json!({"op": "status"}));
        let status = control.next();
        if status["generation"] == 2 && status["unloaded"] == 1 {
            break;
        }
        assert!(swapped.elapsed() < Duration::from_secs(30), "{status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(control.chat(&["after-hup"])["after-hup"], expected_text());

    // SIGTERM: a clean stop that removes the socket.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    drop(control);
    let (status, stderr) = serve.finish();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(!socket.exists(), "the socket file is removed");
    assert!(stderr.contains("stopped after 1 swaps (0 refused); 0 generations stay mapped"), "{stderr}");
}

/// Defect 7 of issue #16: a client that stopped reading blocked serve inside the plugin's
/// callback (a blocking write), pinned the old generation at every swap and kept the process
/// alive after SIGTERM. Now its output waits in a bounded queue; past the bound its streams
/// are cancelled and it is disconnected, generations drain and unload, and SIGTERM exits within
/// the drain time plus the free grace whatever a client does.
#[test]
fn a_client_that_stops_reading_is_cut_off_and_never_pins_a_generation() {
    let (_emulator, serve, socket) = serve_on_socket("stalled", &["--drain-ms", "200", "--client-buffer", "65536"]);
    // Far more output than the bound, and nobody reading it.
    let mut stalled = SocketClient::connect(&socket);
    let mut flood = request("emulator.echo", "emulator: chunks=20000", json!({}));
    flood["id"] = json!("flood");
    stalled.send(&flood);
    serve.wait_log("the stalled client's line", |log| log.lines().find(|l| l.contains("client disconnected: it stopped reading")).map(str::to_string));

    // Three swaps: each old generation drains and unloads; nothing is pinned.
    let mut control = SocketClient::connect(&socket);
    for round in 1..=3u64 {
        control.send(&json!({"op": "swap"}));
        assert_eq!(control.next()["queued"], true);
        let waiting = Instant::now();
        let status = loop {
            control.send(&json!({"op": "status"}));
            let status = control.next();
            if status["generation"] == round + 1 && status["unloaded"] == round {
                break status;
            }
            assert!(waiting.elapsed() < Duration::from_secs(20), "{status}\n{}", serve.stderr());
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!((status["pinned"].as_u64(), status["oldStillMapped"].as_u64(), status["stalledClients"].as_u64()), (Some(0), Some(0), Some(1)), "{status}");
        assert_eq!(control.chat(&["meanwhile"])["meanwhile"], expected_text());
    }
    assert_eq!(mapped_generations(serve.pid()), [4], "only the serving copy is mapped");
    // The stalled client finds its connection closed once it reads what was sent before.
    let mut lines = 0;
    while let Some(Ok(_)) = stalled.lines.next() {
        lines += 1;
    }
    assert!(lines < 20000, "its stream was cut off, not delivered ({lines} lines)");

    // A second client that stops reading mid-stream, then SIGTERM: the process exits promptly.
    let mut idle = SocketClient::connect(&socket);
    let mut long = request("emulator.echo", "emulator: chunks=20000 delay_ms=1", json!({}));
    long["id"] = json!("long");
    idle.send(&long);
    std::thread::sleep(Duration::from_millis(300));
    let term = Instant::now();
    unsafe { libc::kill(serve.pid() as libc::pid_t, libc::SIGTERM) };
    let (status, stderr) = serve.finish();
    let took = term.elapsed();
    eprintln!("SIGTERM with a client that does not read: exited after {took:?} (drain 200 ms)");
    assert!(status.success(), "{stderr}");
    assert!(took < Duration::from_millis(200 + 2000 + 1500), "exit took {took:?}: {stderr}");
    assert!(stderr.contains("0 generations stay mapped"), "{stderr}");
    drop((stalled, control, idle));
}

/// The socket file is owner-only (0600) whatever the umask, unless `--socket-mode` says
/// otherwise: any client that can connect may order a swap.
#[test]
fn the_socket_is_owner_only_unless_the_operator_says_otherwise() {
    use std::os::unix::fs::PermissionsExt;
    for (extra, want) in [(&[][..], 0o600), (&["--socket-mode", "660"][..], 0o660)] {
        let (_emulator, serve, socket) = serve_on_socket(&format!("mode-{want:o}"), extra);
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, want, "{extra:?}");
        unsafe { libc::kill(serve.pid() as libc::pid_t, libc::SIGTERM) };
        assert!(serve.finish().0.success());
    }
}

/// SIGTERM the moment the socket file appears (a supervisor that stops serve as soon as it is
/// up) drains and exits cleanly. The handler was installed after the socket was listening, so a
/// signal in between took SIGTERM's default action: killed, no drain (seen in a full run).
#[test]
fn sigterm_as_soon_as_the_socket_appears_exits_cleanly() {
    let Deployed { emulator: _emulator, dir, config, served } = deployed("early-term");
    for round in 0..20 {
        let socket = dir.join(format!("serve-{round}.sock"));
        let serve = Serve::start_with(&served, &config, &scratch(&format!("early-term-copies-{round}")), Some(&[]), &["--socket", socket.to_str().unwrap()]);
        let started = Instant::now();
        while std::fs::symlink_metadata(&socket).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "no socket: {}", serve.stderr());
            std::hint::spin_loop();
        }
        unsafe { libc::kill(serve.pid() as libc::pid_t, libc::SIGTERM) };
        let (status, stderr) = serve.finish();
        assert!(status.success(), "round {round}: {status:?}\n{stderr}");
        assert!(stderr.contains("0 generations stay mapped"), "round {round}: {stderr}");
    }
}

/// Out of file descriptors, serve backs off instead of spinning on `accept`, and accepts again
/// once descriptors are free.
#[test]
fn out_of_descriptors_serve_backs_off_and_recovers() {
    use std::os::unix::process::CommandExt;
    hermetic_env();
    let emulator = Emulator::start(EmulatorConfig::default());
    let dir = scratch("emfile");
    let config = dir.join("config.json");
    std::fs::write(&config, config_for(&emulator.endpoint()).to_string()).unwrap();
    let socket = dir.join("serve.sock");
    let mut command = Command::new(build_host_asan());
    command.envs(SANITIZERS).env("TMPDIR", scratch("emfile-copies"));
    command.arg("--plugin").arg(served_build(&dir)).arg("--config").arg(&config).args(["serve", "--socket"]).arg(&socket);
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 64, rlim_max: 64 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Each client costs serve a descriptor: 70 of them exhaust 64.
    let mut clients: Vec<SocketClient> = (0..70).map(|_| SocketClient::connect(&socket)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let cpu = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = cpu(child.id());
    std::thread::sleep(Duration::from_secs(1));
    let ticks = cpu(child.id()) - before;
    assert!(ticks < 20, "serve used {ticks} ticks of CPU in one second while out of descriptors (spinning)");
    // Free descriptors: the clients still queued are accepted and served.
    clients.truncate(5);
    let mut late = SocketClient::connect(&socket);
    assert_eq!(late.chat(&["late"])["late"], expected_text());
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    drop((clients, late));
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("retrying every 100 ms") && stderr.contains("accepting clients again"), "{stderr}");
}
