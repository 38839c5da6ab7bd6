//! A mailbox as the host holds it: the protocol (`mailbox_state.rs`), the buffer the host reads
//! what it took from, and how a delivery pass writes a stream's events into it.
//!
//! Each line is one event of the stream tagged `tag`: `{"stream":<tag>, <the event's members>}`.
//! The tag goes in as the object's first member and the event's own opening brace becomes a
//! space, so a line is written once, straight into the box, and the host reads it with one JSON
//! parse.

use super::mailbox_state::{MailboxState, Taken};
use crate::events::Event;
use std::io::Write;
use std::sync::{Mutex, TryLockError};
use std::time::Instant;

/// Bytes a mailbox holds before filers wait, when the host names no capacity.
pub const DEFAULT_CAPACITY: usize = 8 << 20;

pub struct Mailbox {
    state: MailboxState,
    /// What the last take took (NUL-terminated), for the host to read until its next take.
    taken: Mutex<Vec<u8>>,
}

/// Why a take handed nothing out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotTaken {
    /// Another take is under way (one taker at a time: the buffer it hands out is shared).
    Busy,
    /// Closed, and nothing left to take.
    Closed,
}

/// One take, as the host sees it: the lines (valid until the next take), their length without
/// the NUL, and how many events they hold.
pub struct TakenLines {
    pub ptr: *const u8,
    pub len: usize,
    pub count: usize,
}

impl Mailbox {
    pub fn new(capacity: usize) -> Mailbox {
        Mailbox { state: MailboxState::new(capacity), taken: Mutex::new(Vec::new()) }
    }

    /// Files `events` of stream `tag` as the box's lines; how many were filed (0 when the box is
    /// closed or the stream was cancelled while the box was full). `may_wait`: whether this
    /// filer may wait for room (`mailbox_state.rs`); a terminal event never does.
    pub fn file(&self, tag: u64, events: &[Event], may_wait: bool, go_on: impl Fn() -> bool) -> usize {
        let terminal = events.last().is_some_and(Event::is_terminal);
        let filed = self.state.file(may_wait && !terminal, go_on, |buf| {
            let mut count = 0;
            for event in events {
                let line = buf.len();
                let _ = write!(buf, "{{\"stream\":{tag},");
                let body = buf.len();
                if !event.write_json(buf) || buf.get(body) != Some(&b'{') {
                    buf.truncate(line);
                    continue;
                }
                buf[body] = b' ';
                buf.push(b'\n');
                count += 1;
            }
            count
        });
        if filed {
            events.len()
        } else {
            0
        }
    }

    /// Whether the box holds less than its capacity (or is closed: filing then drops at once).
    pub fn has_room(&self) -> bool {
        self.state.has_room()
    }

    /// Takes everything filed, waiting until `deadline` for something; Err when another take is
    /// under way or the box is closed and empty.
    pub fn take(&self, deadline: Option<Instant>) -> Result<TakenLines, NotTaken> {
        let mut taken = match self.taken.try_lock() {
            Ok(taken) => taken,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(NotTaken::Busy),
        };
        match self.state.take(&mut taken, deadline) {
            Taken::Events(count) => {
                let len = taken.len();
                taken.push(0);
                Ok(TakenLines { ptr: taken.as_ptr(), len, count })
            }
            Taken::Closed => Err(NotTaken::Closed),
        }
    }

    pub fn close(&self) {
        self.state.close();
    }
}
