//! One request at a time opens a stream thread's connection; the others that come meanwhile wait
//! until it has a response, or for `WAIT` at most, then share its connection.
//!
//! The SDK's HTTPS client offers h2 and http/1.1 and learns which one the server speaks only when
//! a TLS handshake is done, so until then every request that finds no pooled connection dials
//! its own. Each stream thread has a pool of its own (`provider/shards.rs`): a burst that found a
//! thread's pool cold opened one connection per stream (51 for 100 streams in
//! `tests/scale.rs`), each a TLS handshake and its buffers kept until the idle timeout. Over HTTP/2
//! the pool shares a connection as soon as its handshake is done, before any response: `WAIT`
//! covers a handshake with Bedrock's regional endpoint (tens of milliseconds) and bounds what a
//! service that answers only once the model starts could cost the requests behind the first.
//! Over HTTP/1.1 (a server without h2) each then dials its own, as before.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The longest a request waits for another to open the connection.
const WAIT: Duration = Duration::from_millis(200);

/// Where a stream runs: which of the clients' stream clients it uses (that of its thread), and
/// the gate of that client's connection.
pub struct Lane {
    pub client: usize,
    pub connecting: Arc<Connecting>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No connection known to be pooled: the next request opens one.
    Cold,
    /// A request is opening it; the others wait.
    Opening,
    /// A request got a response over the pool's connection.
    Open,
}

/// The state of one stream thread's connection, as its requests have seen it.
pub struct Connecting {
    state: Mutex<State>,
    settled: Notify,
    /// Off when the client speaks only HTTP/1.1: no connection is shared, nothing to wait for.
    enabled: bool,
    /// `WAIT`, shorter in the tests.
    wait: Duration,
}

/// Held by the request that opens the connection; dropped unfinished (cancelled, or failed
/// before any response), it leaves the next request to open it.
pub struct Opener<'a> {
    gate: &'a Connecting,
    opened: bool,
}

impl Connecting {
    pub fn new(enabled: bool) -> Connecting {
        Connecting::waiting(enabled, WAIT)
    }

    fn waiting(enabled: bool, wait: Duration) -> Connecting {
        Connecting { state: Mutex::new(State::Cold), settled: Notify::new(), enabled, wait }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before a request: `Some` when this request opens the connection, `None` when it is open
    /// or another request has been opening it for as long as this one waits.
    pub async fn enter(&self) -> Option<Opener<'_>> {
        if !self.enabled {
            return None;
        }
        let give_up = tokio::time::Instant::now() + self.wait;
        loop {
            // Created before the state is read: a `notify_waiters` after the read still reaches it.
            let settled = self.settled.notified();
            {
                let mut state = self.state();
                match *state {
                    State::Open => return None,
                    State::Cold => {
                        *state = State::Opening;
                        return Some(Opener { gate: self, opened: false });
                    }
                    State::Opening => {}
                }
            }
            if tokio::time::timeout_at(give_up, settled).await.is_err() {
                return None;
            }
        }
    }

    /// The pool may have no connection now: the thread ran out of streams (its pool closes an
    /// idle connection on a timer), or a request failed without a response.
    pub fn cooled(&self) {
        let mut state = self.state();
        if *state == State::Open {
            *state = State::Cold;
        }
    }
}

impl Opener<'_> {
    /// The request got a response (an error response too): the connection is there to share.
    pub fn opened(mut self) {
        self.opened = true;
    }
}

impl Drop for Opener<'_> {
    fn drop(&mut self) {
        *self.gate.state() = if self.opened { State::Open } else { State::Cold };
        self.gate.settled.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// A second request, started while `gate`'s opener is under way and given the time to reach
    /// its wait; `then` reads what `enter` gave it.
    async fn request_behind(gate: &Arc<Connecting>, then: fn(Option<Opener<'_>>) -> bool) -> tokio::task::JoinHandle<bool> {
        let gate = gate.clone();
        let waiter = tokio::spawn(async move { then(gate.enter().await) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiter
    }

    #[test]
    fn the_first_request_opens_and_the_others_wait_for_its_response() {
        rt().block_on(async {
            let gate = Arc::new(Connecting::waiting(true, Duration::from_secs(30)));
            let opener = gate.enter().await.expect("the first request opens the connection");
            let waiter = request_behind(&gate, |o| o.is_none()).await;
            assert!(!waiter.is_finished(), "a request waits while the connection is being opened");
            opener.opened();
            assert!(waiter.await.unwrap(), "it then goes on over the open connection");
            assert!(gate.enter().await.is_none(), "later requests do not wait");
        });
    }

    #[test]
    fn an_opener_that_fails_or_is_dropped_hands_the_opening_on() {
        rt().block_on(async {
            let gate = Arc::new(Connecting::waiting(true, Duration::from_secs(30)));
            let opener = gate.enter().await.unwrap();
            let waiter = request_behind(&gate, |o| o.map(Opener::opened).is_some()).await;
            drop(opener);
            assert!(waiter.await.unwrap(), "the waiter opens it instead");
            assert!(gate.enter().await.is_none());
            gate.cooled();
            assert!(gate.enter().await.is_some(), "once cooled, the next request opens it again");
        });
    }

    #[test]
    fn a_request_waits_for_the_opener_no_longer_than_its_wait() {
        rt().block_on(async {
            let gate = Arc::new(Connecting::waiting(true, Duration::from_millis(100)));
            let _slow = gate.enter().await.expect("opens");
            let waiter = request_behind(&gate, |o| o.is_none()).await;
            assert!(!waiter.is_finished(), "it waits while the opener is under way");
            let went_on = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("it stops waiting").unwrap();
            assert!(went_on, "it goes on without opening: the connection is the opener's");
        });
    }

    #[test]
    fn over_http1_only_nobody_waits() {
        rt().block_on(async {
            let gate = Connecting::new(false);
            assert!(gate.enter().await.is_none());
            assert!(gate.enter().await.is_none());
        });
    }
}
