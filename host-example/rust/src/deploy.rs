//! What a build must be before a copy of it is loaded — the same checks as `bp-host serve`
//! (host-example/serve_gens.c): one that is still being written, not the one consistent build its
//! `.sha256` names, truncated, or that would find no pthread key for its first thread is refused
//! with its reason, and whatever already serves goes on serving.

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// Looks at a build that is still changing before giving up on it, `SETTLE` apart.
const LOOKS: u32 = 3;
const SETTLE: Duration = Duration::from_millis(300);
/// A copy's first thread needs one pthread key (Rust std's), and the plugin refuses below this.
const KEYS_NEEDED: usize = 4;
/// Below this the host says so before every load.
const KEYS_WARN: usize = 64;

pub struct Policy {
    /// Refuse a build with no `<file>.sha256` beside it (`--no-digest` turns this off).
    pub require_digest: bool,
}

/// Why a look at the build did not give a loadable copy; `Settling` is worth another look.
enum Refusal {
    Settling(String),
    Final(String),
}

/// Copies `build` to `copy` once it is a settled, consistent build, or says why it is not.
pub fn take(build: &Path, copy: &Path, policy: &Policy) -> Result<(), String> {
    let mut last = String::new();
    for look in 1..=LOOKS {
        let outcome = look_once(build, copy, policy);
        if outcome.is_err() {
            // Nothing refused is left behind, whatever the reason.
            let _ = std::fs::remove_file(copy);
        }
        match outcome {
            Ok(()) => return Ok(()),
            Err(Refusal::Final(why)) => return Err(why),
            Err(Refusal::Settling(why)) => last = why,
        }
        if look < LOOKS {
            std::thread::sleep(SETTLE);
        }
    }
    Err(format!("{last} (refused after {LOOKS} looks, {} ms apart)", SETTLE.as_millis()))
}

fn look_once(build: &Path, copy: &Path, policy: &Policy) -> Result<(), Refusal> {
    let shown = build.display();
    let before = std::fs::metadata(build).map_err(|e| Refusal::Final(format!("cannot read {shown}: {e}")))?;
    let digest = copy_hashing(build, copy).map_err(|e| Refusal::Final(format!("copying {shown}: {e}")))?;
    let after = std::fs::metadata(build).map_err(|e| Refusal::Final(format!("cannot read {shown}: {e}")))?;
    if !same_state(&before, &after) {
        return Err(Refusal::Settling(format!("{shown} changed while it was copied (still being written?)")));
    }
    check_digest(build, &digest, policy).map_err(Refusal::Settling)?;
    check_elf(copy).map_err(|why| Refusal::Final(format!("{shown}: {why}")))?;
    check_keys().map_err(Refusal::Final)
}

/// The same file (device, inode) in the same state (size, mtime, ctime) at both looks.
fn same_state(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    (a.dev(), a.ino(), a.size(), a.mtime(), a.mtime_nsec(), a.ctime(), a.ctime_nsec())
        == (b.dev(), b.ino(), b.size(), b.mtime(), b.mtime_nsec(), b.ctime(), b.ctime_nsec())
}

/// Copies the file, returning the SHA-256 of exactly the bytes written.
fn copy_hashing(from: &Path, to: &Path) -> std::io::Result<String> {
    let mut input = std::fs::File::open(from)?;
    let mut output = std::fs::OpenOptions::new().write(true).create_new(true).open(to)?;
    let mut sha = Sha256::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = input.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        sha.update(&chunk[..n]);
        output.write_all(&chunk[..n])?;
    }
    output.sync_all()?;
    Ok(sha.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// `<build>.sha256`, sha256sum's format (written by `make ship` / `make install`), must name the
/// bytes copied: a half-written file or a mix of two builds is never mapped.
fn check_digest(build: &Path, got: &str, policy: &Policy) -> Result<(), String> {
    let path = format!("{}.sha256", build.display());
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(_) if !policy.require_digest => return Ok(()),
        Err(e) => return Err(format!("no digest beside {} ({path}: {e}); deploy with `make install`, or write one with sha256sum (or pass --no-digest)", build.display())),
    };
    let want = text.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
    if want.len() != 64 || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{path} does not start with a SHA-256 digest"));
    }
    if want != got {
        return Err(format!(
            "the SHA-256 of {} is {}…, not the {}… of {path} (a build still being written, or a mix of two builds)",
            build.display(),
            &got[..12],
            &want[..12]
        ));
    }
    Ok(())
}

/// A truncated file maps pages past its end (SIGBUS when touched): every segment and the
/// section table must lie inside the file.
fn check_elf(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let word = |at: usize, n: usize| -> Option<u64> {
        let b = bytes.get(at..at + n)?;
        Some(b.iter().rev().fold(0u64, |v, x| (v << 8) | u64::from(*x)))
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("not a shared object (no ELF header)".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 || word(16, 2) != Some(3) {
        return Err("not a 64-bit little-endian ELF shared object".into());
    }
    let size = bytes.len() as u64;
    let (phoff, shoff) = (word(32, 8).unwrap_or(0), word(40, 8).unwrap_or(0));
    let (phentsize, phnum, shentsize, shnum) = (word(54, 2).unwrap_or(0), word(56, 2).unwrap_or(0), word(58, 2).unwrap_or(0), word(60, 2).unwrap_or(0));
    if shoff.saturating_add(shnum * shentsize) > size || phoff.saturating_add(phnum * phentsize) > size {
        return Err(format!("the file is truncated ({size} bytes; its headers describe more)"));
    }
    for i in 0..phnum {
        let at = (phoff + i * phentsize) as usize;
        let (offset, filesz) = (word(at + 8, 8).unwrap_or(u64::MAX), word(at + 32, 8).unwrap_or(u64::MAX));
        if offset.saturating_add(filesz) > size {
            return Err(format!("the file is truncated ({size} bytes; segment {i} ends at {})", offset.saturating_add(filesz)));
        }
    }
    Ok(())
}

/// Free pthread keys, read from glibc's key table (an entry is in use while its sequence number
/// is odd); None where there is no such table. Counting by creating keys would take them from
/// every other thread for a moment.
pub fn free_pthread_keys() -> Option<usize> {
    #[repr(C)]
    struct Slot {
        seq: usize,
        destructor: usize,
    }
    const KEYS: usize = 1024;
    // SAFETY: dlsym with a NUL-terminated name; a non-NULL answer is glibc's static table of
    // PTHREAD_KEYS_MAX entries, alive for the whole process.
    let table = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__pthread_keys".as_ptr()) };
    if table.is_null() {
        return None;
    }
    let slots = unsafe { &*(table as *const [Slot; KEYS]) };
    Some(slots.iter().filter(|s| s.seq & 1 == 0).count())
}

fn check_keys() -> Result<(), String> {
    match free_pthread_keys() {
        Some(free) if free < KEYS_NEEDED => Err(format!("this process has {free} pthread keys left and a new copy needs {KEYS_NEEDED}")),
        Some(free) if free < KEYS_WARN => {
            eprintln!("bp-host-rs: warning: {free} pthread keys left in this process; loads are refused below {KEYS_NEEDED}");
            Ok(())
        }
        _ => Ok(()),
    }
}
