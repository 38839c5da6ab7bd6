//! `bedrock-emulator [--port N] [--bearer-token T]`: serves until killed and prints
//! `listening on http://127.0.0.1:PORT` once ready (the demo reads that line).

fn main() {
    let mut config = bedrock_emulator::Config::default();
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => port = value().parse().expect("--port takes a number"),
            "--access-key" => config.access_key = value(),
            "--secret-key" => config.secret_key = value(),
            "--bearer-token" => config.bearer_token = Some(value()),
            other => {
                eprintln!("unknown option {other}; usage: bedrock-emulator [--port N] [--access-key K --secret-key S] [--bearer-token T]");
                std::process::exit(2);
            }
        }
    }
    let emulator = bedrock_emulator::Emulator::start_on(config, port);
    println!("listening on {}", emulator.endpoint());
    use std::io::Write;
    std::io::stdout().flush().ok();
    loop {
        std::thread::park();
    }
}
