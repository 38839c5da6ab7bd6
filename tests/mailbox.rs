//! The mailbox (ABI 1.7) through the C ABI and the real SDK: many streams filing into one box, a
//! host thread taking their events; waits that time out, closes that race waits, a full box that
//! holds its streams back, and a provider freed while its streams file.

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::raw::{c_char, c_void};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHUTTING_DOWN: i32 = 8;
const BUSY: i32 = 16;
const INVALID_ARGUMENT: i32 = 1;

struct Mailbox(*mut c_void);
unsafe impl Send for Mailbox {}
unsafe impl Sync for Mailbox {}

impl Mailbox {
    fn new(capacity: u32) -> Mailbox {
        let mut out = std::ptr::null_mut();
        assert_eq!(unsafe { (api().mailbox_new)(capacity, &mut out) }, 0);
        assert!(!out.is_null());
        Mailbox(out)
    }

    /// One take: the lines, or the status.
    fn wait(&self, timeout_ms: u32) -> Result<Vec<Value>, i32> {
        self.take(timeout_ms).map(|(lines, _)| lines)
    }

    /// One take: the lines and their length in bytes, or the status.
    fn take(&self, timeout_ms: u32) -> Result<(Vec<Value>, usize), i32> {
        let (mut text, mut len, mut count): (*const c_char, usize, usize) = (std::ptr::null(), 0, 0);
        let rc = unsafe { (api().mailbox_wait)(self.0, timeout_ms, &mut text, &mut len, &mut count) };
        if rc != 0 {
            assert!(text.is_null() && len == 0 && count == 0, "nothing is handed out on failure");
            return Err(rc);
        }
        if count == 0 {
            return Ok((Vec::new(), 0));
        }
        let bytes = unsafe { std::slice::from_raw_parts(text.cast::<u8>(), len + 1) };
        assert_eq!(bytes[len], 0, "the lines are NUL-terminated");
        let lines: Vec<Value> = std::str::from_utf8(&bytes[..len])
            .unwrap()
            .split_terminator('\n')
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        assert_eq!(lines.len(), count, "count is the number of lines");
        Ok((lines, len))
    }

    fn close(&self) {
        unsafe { (api().mailbox_close)(self.0) };
    }

    /// Takes until every one of `tags` has its terminal event, or `within` runs out. The events
    /// of each stream, without the tag, in the order taken.
    fn collect(&self, tags: usize, within: Duration) -> BTreeMap<u64, Vec<Value>> {
        self.collect_after(Vec::new(), tags, within)
    }

    /// As `collect`, with the lines of a take already made first.
    fn collect_after(&self, taken: Vec<Value>, tags: usize, within: Duration) -> BTreeMap<u64, Vec<Value>> {
        let deadline = Instant::now() + within;
        let mut streams: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
        let mut next = taken;
        loop {
            for mut line in std::mem::take(&mut next) {
                let tag = line["stream"].as_u64().unwrap_or_else(|| panic!("no tag: {line}"));
                line.as_object_mut().unwrap().remove("stream");
                let events = streams.entry(tag).or_default();
                assert!(!events.iter().any(is_terminal), "stream {tag}: an event after its terminal one: {line}");
                events.push(line);
            }
            let ended = streams.values().filter(|events| events.iter().any(is_terminal)).count();
            if ended == tags {
                return streams;
            }
            assert!(Instant::now() < deadline, "not every stream ended within {within:?}: {ended} of {tags}");
            next = self.wait(200).expect("wait");
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        unsafe { (api().mailbox_free)(self.0) };
    }
}

fn start_into(p: &Provider, mailbox: &Mailbox, tag: u64, prompt: &str) -> *mut c_void {
    let body = CString::new(request("emulator.echo", prompt, json!({})).to_string()).unwrap();
    let (mut handle, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
    let rc = unsafe { (api().stream_start_mailbox)(p.0, body.as_ptr(), mailbox.0, tag, &mut handle, &mut err) };
    assert_eq!(rc, 0, "start: {}", if err.is_null() { Value::Null } else { take_json(err) });
    handle
}

fn release(handles: Vec<*mut c_void>) {
    for h in handles {
        unsafe { (api().stream_release)(h) };
    }
}

#[test]
fn many_streams_share_one_mailbox_each_in_order_and_ending_once() {
    let (_e, p) = setup();
    let mailbox = Mailbox::new(0);
    // The largest tag a JavaScript host can hold exactly, among small ones.
    let tags: Vec<u64> = (1..=39).chain([(1 << 53) - 1]).collect();
    let handles: Vec<_> = tags.iter().map(|&tag| start_into(&p, &mailbox, tag, &format!("emulator: chunks={} delay_ms=5", 10 + tag % 20))).collect();
    let streams = mailbox.collect(tags.len(), Duration::from_secs(60));
    assert_eq!(streams.keys().copied().collect::<Vec<_>>(), tags);
    for (tag, events) in &streams {
        let chunks = 10 + tag % 20;
        assert_eq!(events[0]["type"], "start", "stream {tag}");
        let want: String = (0..chunks).map(|i| format!("w{i} ")).collect();
        assert_eq!(text_of(events), want, "stream {tag}: every delta, in order");
        assert_eq!(events.last().unwrap()["type"], "done", "stream {tag}");
        assert_eq!(final_message(events.last().unwrap())["content"][0]["text"], want.as_str(), "stream {tag}");
    }
    release(handles);
    // Nothing more comes; the box is still open.
    assert_eq!(mailbox.wait(50), Ok(Vec::new()));
}

#[test]
fn an_empty_wait_times_out_and_a_close_ends_a_wait_under_way() {
    hermetic_env();
    let mailbox = Arc::new(Mailbox::new(0));
    let started = Instant::now();
    assert_eq!(mailbox.wait(100), Ok(Vec::new()));
    assert!(started.elapsed() >= Duration::from_millis(90), "it waited: {:?}", started.elapsed());
    // One taker at a time: a second wait is refused while the first is under way.
    let waiter = {
        let mailbox = mailbox.clone();
        std::thread::spawn(move || mailbox.wait(60_000))
    };
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(mailbox.wait(0), Err(BUSY));
    let closed_at = Instant::now();
    mailbox.close();
    assert_eq!(waiter.join().unwrap(), Err(SHUTTING_DOWN));
    assert!(closed_at.elapsed() < Duration::from_secs(5), "the close woke the wait: {:?}", closed_at.elapsed());
    assert_eq!(mailbox.wait(60_000), Err(SHUTTING_DOWN), "closed and empty: at once");
}

#[test]
fn a_close_racing_a_wait_never_leaves_it_waiting() {
    // Hostile timing: the close lands before the wait begins, while it takes the lock, or while
    // it sleeps; the wait returns at once in every case.
    hermetic_env();
    for i in 0..300u64 {
        let mailbox = Arc::new(Mailbox::new(0));
        let waiter = {
            let mailbox = mailbox.clone();
            std::thread::spawn(move || mailbox.wait(30_000))
        };
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_micros(i % 60) {
            std::hint::spin_loop();
        }
        mailbox.close();
        let closed_at = Instant::now();
        assert_eq!(waiter.join().unwrap(), Err(SHUTTING_DOWN), "round {i}");
        assert!(closed_at.elapsed() < Duration::from_secs(5), "round {i}: the wait outlived the close by {:?}", closed_at.elapsed());
    }
}

#[test]
fn a_full_mailbox_holds_its_streams_back_and_a_cancel_still_ends_one() {
    let (_e, p) = setup();
    const CAPACITY: usize = 2048;
    let mailbox = Mailbox::new(CAPACITY as u32);
    let handles: Vec<_> = (0..6).map(|tag| start_into(&p, &mailbox, tag, "emulator: chunks=400")).collect();
    // Nobody takes: the streams fill the box and wait (their tasks stop reading the network).
    std::thread::sleep(Duration::from_millis(700));
    unsafe { (api().stream_cancel)(handles[5]) };
    std::thread::sleep(Duration::from_millis(300));
    let (taken, len) = mailbox.take(0).expect("take");
    let count = taken.len();
    // Filers wait while the box holds its capacity; one batch (at most a stream's 128 queued
    // events) may land past it, and the cancelled stream's terminal event, which never waits.
    assert!(len < CAPACITY + 24 * 1024, "the box held {len} bytes ({count} events) for a {CAPACITY}-byte capacity");
    assert!(count < 6 * 400, "the streams were held back: {count} events filed before any take");
    let streams = mailbox.collect_after(taken, 6, Duration::from_secs(60));
    let want: String = (0..400).map(|i| format!("w{i} ")).collect();
    for tag in 0..5 {
        assert_eq!(text_of(&streams[&tag]), want, "stream {tag} lost nothing while it waited");
        assert_eq!(streams[&tag].last().unwrap()["type"], "done");
    }
    let cancelled = streams[&5].last().unwrap();
    assert_eq!((cancelled["type"].as_str(), cancelled["reason"].as_str()), (Some("error"), Some("aborted")), "{cancelled}");
    release(handles);
}

#[test]
fn what_streams_filed_before_their_provider_was_freed_is_still_taken_after() {
    let (_e, p) = setup();
    let mailbox = Mailbox::new(0);
    let handles: Vec<_> = (0..10).map(|tag| start_into(&p, &mailbox, tag, "emulator: chunks=50 delay_ms=20")).collect();
    std::thread::sleep(Duration::from_millis(200));
    // No drain: every stream is cancelled, and its end is filed before free returns.
    assert_eq!(p.free(0), 7, "BP_ERR_CANCELLED");
    let streams = mailbox.collect(10, Duration::from_secs(10));
    for (tag, events) in &streams {
        let end = events.last().unwrap();
        assert_eq!((end["type"].as_str(), end["reason"].as_str()), (Some("error"), Some("aborted")), "stream {tag}: {end}");
        // The final message holds exactly what the delivered deltas built.
        assert_eq!(final_message(end)["content"][0]["text"].as_str().unwrap_or(""), text_of(events), "stream {tag}");
    }
    release(handles);
}

#[test]
fn bad_arguments_are_refused_never_a_crash() {
    let (_e, p) = setup();
    assert_eq!(unsafe { (api().mailbox_new)(0, std::ptr::null_mut()) }, INVALID_ARGUMENT);
    let (mut text, mut len, mut count): (*const c_char, usize, usize) = (std::ptr::null(), 0, 0);
    assert_eq!(unsafe { (api().mailbox_wait)(std::ptr::null_mut(), 0, &mut text, &mut len, &mut count) }, INVALID_ARGUMENT);
    let mailbox = Mailbox::new(0);
    assert_eq!(unsafe { (api().mailbox_wait)(mailbox.0, 0, std::ptr::null_mut(), &mut len, &mut count) }, INVALID_ARGUMENT);
    assert_eq!(unsafe { (api().mailbox_wait)(mailbox.0, 0, &mut text, std::ptr::null_mut(), &mut count) }, INVALID_ARGUMENT);
    let body = CString::new(request("emulator.echo", "hi", json!({})).to_string()).unwrap();
    let (mut handle, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
    let rc = unsafe { (api().stream_start_mailbox)(p.0, body.as_ptr(), std::ptr::null_mut(), 1, &mut handle, &mut err) };
    assert_eq!(rc, INVALID_ARGUMENT);
    assert!(handle.is_null());
    assert!(take_json(err)["message"].as_str().unwrap().contains("mailbox is NULL"));
    // An unknown model: refused at the start, nothing filed.
    let body = CString::new(request("no.such-model", "hi", json!({})).to_string()).unwrap();
    let rc = unsafe { (api().stream_start_mailbox)(p.0, body.as_ptr(), mailbox.0, 1, &mut handle, &mut err) };
    assert_eq!(rc, 4, "BP_ERR_NOT_FOUND");
    assert_eq!(take_json(err)["code"], "not_found");
    assert_eq!(mailbox.wait(50), Ok(Vec::new()));
    unsafe {
        (api().mailbox_close)(std::ptr::null_mut());
        (api().mailbox_free)(std::ptr::null_mut());
    }
}
