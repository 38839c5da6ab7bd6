//! bp-host-rs — the example Rust host for bedrock-plugin.
//!
//!   bp-host-rs --plugin PATH --config FILE models
//!   bp-host-rs --plugin PATH --config FILE chat --model ID PROMPT
//!   bp-host-rs --plugin PATH --config FILE swap [--no-digest] --next PATH --model ID PROMPT
//!
//! `models` and `chat` load the plugin through abi_stable (`PluginModuleRef::load_from_file`), which
//! checks the module's layout against this host's before anything runs. abi_stable never unloads
//! and keeps one module per type, so `swap` takes the other door: `libloading` on a private copy of
//! each build, and every call through that copy's `bp_get_api` table. It streams on the first
//! build, loads the second while the first still streams, then frees and unloads the first. A
//! build is loaded only when it passes `bp-host serve`'s deploy checks (`deploy.rs`: settled,
//! matching its `.sha256`, not truncated, a pthread key to spare); a refused second build leaves
//! the first serving, and the command says why and exits 1.

mod deploy;
mod door;

use door::{Chat, Door};
use std::path::{Path, PathBuf};

struct Args {
    plugin: PathBuf,
    config: String,
    command: String,
    model: Option<String>,
    next: Option<PathBuf>,
    prompt: Option<String>,
    policy: deploy::Policy,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut plugin, mut config, mut command, mut model, mut next, mut prompt) = (None, None, None, None, None, None);
    let mut policy = deploy::Policy { require_digest: true };
    while let Some(arg) = args.next() {
        let mut value = |what: &str| args.next().ok_or(format!("{what} needs a value"));
        match arg.as_str() {
            "--plugin" => plugin = Some(PathBuf::from(value("--plugin")?)),
            "--config" => config = Some(value("--config")?),
            "--model" => model = Some(value("--model")?),
            "--next" => next = Some(PathBuf::from(value("--next")?)),
            "--no-digest" => policy.require_digest = false,
            _ if command.is_none() => command = Some(arg),
            _ if prompt.is_none() => prompt = Some(arg),
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    let config_path = config.ok_or("--config FILE is required")?;
    let config = std::fs::read_to_string(&config_path).map_err(|e| format!("cannot read {config_path}: {e}"))?;
    Ok(Args { plugin: plugin.ok_or("--plugin PATH is required")?, config, command: command.ok_or("no command")?, model, next, prompt, policy })
}

fn chat_request(model: &str, prompt: &str) -> String {
    serde_json::json!({"model": model, "context": {"messages": [{"role": "user", "content": prompt}]}}).to_string()
}

/// Prints what a finished chat produced; false if it failed.
fn report(label: &str, chat: &Chat) -> bool {
    let (text, terminal) = chat.wait();
    println!("{label}: {text}");
    let message = if terminal["type"] == "done" { &terminal["message"] } else { &terminal["error"] };
    println!("{label}: {} ({})", terminal["reason"].as_str().unwrap_or("?"), message["errorMessage"].as_str().unwrap_or("ok"));
    terminal["type"] == "done"
}

fn run(args: Args) -> Result<bool, String> {
    match args.command.as_str() {
        "models" => {
            let door = Door::checked_module(&args.plugin)?;
            let provider = door.provider_new(&args.config)?;
            let listed: serde_json::Value = serde_json::from_str(&door.discover(provider)?).map_err(|e| e.to_string())?;
            for m in listed["models"].as_array().into_iter().flatten() {
                println!("{}\t{}", m["id"].as_str().unwrap_or(""), m["name"].as_str().unwrap_or(""));
            }
            door.provider_free(provider);
            Ok(true)
        }
        "chat" => {
            let (model, prompt) = (args.model.ok_or("--model is required")?, args.prompt.ok_or("PROMPT is required")?);
            let door = Door::checked_module(&args.plugin)?;
            let provider = door.provider_new(&args.config)?;
            let chat = door.start(provider, &chat_request(&model, &prompt))?;
            let ok = report(&format!("version {}", door.version()), &chat);
            door.finish(chat);
            door.provider_free(provider);
            Ok(ok)
        }
        "swap" => swap(&args),
        other => Err(format!("unknown command {other} (models, chat, swap)")),
    }
}

fn swap(args: &Args) -> Result<bool, String> {
    let next = args.next.as_deref().ok_or("--next PATH is required")?;
    let (model, prompt) = (args.model.as_deref().ok_or("--model is required")?, args.prompt.as_deref().ok_or("PROMPT is required")?);
    let copies = std::env::temp_dir().join(format!("bp-host-rs.{}", std::process::id()));
    std::fs::create_dir_all(&copies).map_err(|e| e.to_string())?;
    let first = Door::private_copy(&args.plugin, &copies.join("generation-1.so"), &args.policy).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&copies);
    })?;
    let first_provider = first.provider_new(&args.config)?;
    let first_chat = first.start(first_provider, &chat_request(model, prompt))?;
    // The second build comes in while the first still streams; new work goes to it.
    let second = Door::private_copy(next, &copies.join("generation-2.so"), &args.policy)
        .and_then(|door| door.provider_new(&args.config).map(|provider| (door, provider)));
    let (second, second_provider) = match second {
        Ok(loaded) => loaded,
        Err(why) => {
            // Refused: the first build keeps serving what it has and what comes next.
            println!("swap refused, generation 1 keeps serving: {why}");
            let again = first.start(first_provider, &chat_request(model, prompt))?;
            report(&format!("generation 1, version {}", first.version()), &first_chat);
            report(&format!("generation 1 after the refusal, version {}", first.version()), &again);
            first.finish(first_chat);
            first.finish(again);
            first.provider_free(first_provider);
            let _ = std::fs::remove_dir_all(&copies);
            return Ok(false);
        }
    };
    let second_chat = second.start(second_provider, &chat_request(model, prompt))?;
    let mut ok = report(&format!("generation 1, version {}", first.version()), &first_chat);
    first.finish(first_chat);
    first.provider_free(first_provider);
    drop(first); // dlclose
    let unmapped = match still_mapped(&copies.join("generation-1.so")) {
        Some(true) => "no",
        Some(false) => "yes",
        None => "unknown (no /proc/self/maps here)",
    };
    println!("generation 1 unmapped: {unmapped}");
    ok &= report(&format!("generation 2, version {}", second.version()), &second_chat);
    second.finish(second_chat);
    second.provider_free(second_provider);
    drop(second);
    let _ = std::fs::remove_dir_all(&copies);
    Ok(ok)
}

/// Whether a file is still mapped into this process; None where /proc/self/maps does not exist.
fn still_mapped(path: &Path) -> Option<bool> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    Some(maps.contains(path.to_str()?))
}

fn main() {
    let outcome = parse_args().and_then(run);
    match outcome {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("bp-host-rs: {e}");
            std::process::exit(2);
        }
    }
}
