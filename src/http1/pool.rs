//! Idle HTTP/1.1 connections kept for the next request to the same origin, and closed by a timer
//! once they have been idle for the idle timeout, with no request needed: after a burst of
//! streams a gateway that goes quiet gets its sockets and their buffers back.
//!
//! A connection is in the pool only while idle: it is taken out for a request, and put back by
//! a task of its own once its answer has been read to the end (`give_back_when`). The timer is
//! one task per pool, running only while the pool holds connections; it sleeps until the oldest
//! one's expiry, so a connection goes within a few milliseconds of its idle timeout.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// An origin: scheme and authority, as the request named them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key(String);

impl Key {
    pub fn new(scheme: &str, authority: &str) -> Key {
        Key(format!("{scheme}://{authority}"))
    }

    /// What the connector dials.
    pub fn uri(&self) -> Result<http::Uri, http::uri::InvalidUri> {
        self.0.parse()
    }
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

struct Inner<C> {
    idle: HashMap<Key, Vec<Idle<C>>>,
    /// The expiry timer's task runs; it ends when the pool is empty.
    timer: bool,
}

pub struct Pool<C> {
    idle_timeout: Duration,
    inner: Mutex<Inner<C>>,
}

impl<C: Send + 'static> Pool<C> {
    pub fn new(idle_timeout: Duration) -> Arc<Pool<C>> {
        Arc::new(Pool { idle_timeout, inner: Mutex::new(Inner { idle: HashMap::new(), timer: false }) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<C>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection to `key` that is `usable`; the unusable ones met
    /// on the way (closed by the server) are dropped.
    pub fn take(&self, key: &Key, usable: impl Fn(&C) -> bool) -> Option<C> {
        let mut unusable = Vec::new();
        let found = {
            let mut inner = self.lock();
            let list = inner.idle.get_mut(key)?;
            let mut found = None;
            while let Some(idle) = list.pop() {
                if usable(&idle.conn) {
                    found = Some(idle.conn);
                    break;
                }
                unusable.push(idle.conn);
            }
            found
        };
        // Closing a connection takes no lock of ours.
        drop(unusable);
        found
    }

    /// Puts `conn` back once `ready` says it can carry another request (`None`: it cannot).
    /// Runs on the client's runtime, as a task of its own.
    pub fn give_back_when<F, Fut>(self: &Arc<Self>, key: Key, conn: C, ready: F)
    where
        F: FnOnce(C) -> Fut + Send + 'static,
        Fut: Future<Output = Option<C>> + Send + 'static,
    {
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            if let (Some(conn), Some(pool)) = (ready(conn).await, pool.upgrade()) {
                pool.put(key, conn);
            }
        });
    }

    fn put(self: &Arc<Self>, key: Key, conn: C) {
        let mut inner = self.lock();
        inner.idle.entry(key).or_default().push(Idle { conn, since: Instant::now() });
        if !std::mem::replace(&mut inner.timer, true) {
            tokio::spawn(expire(Arc::downgrade(self)));
        }
    }

    /// Drops the connections idle for the idle timeout; returns how long until the next one is
    /// due, or `None` when none is left (the timer ends: the next `put` starts another).
    fn sweep(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut expired = Vec::new();
        let next = {
            let mut inner = self.lock();
            let mut oldest: Option<Instant> = None;
            // Each list is in the order connections came back (`put` pushes, `take` pops the
            // newest), so the expired ones are its front.
            inner.idle.retain(|_, list| {
                let due = list.partition_point(|i| now.duration_since(i.since) >= self.idle_timeout);
                expired.extend(list.drain(..due));
                oldest = list.first().map(|i| i.since).into_iter().chain(oldest).min();
                !list.is_empty()
            });
            if oldest.is_none() {
                inner.timer = false;
            }
            oldest.map(|since| (since + self.idle_timeout).saturating_duration_since(now))
        };
        drop(expired);
        next
    }
}

/// The expiry timer: holds the pool weakly, so a client dropped with connections idle ends it.
async fn expire<C: Send + 'static>(pool: Weak<Pool<C>>) {
    let mut wait = pool.upgrade().map(|p| p.idle_timeout);
    while let Some(d) = wait {
        tokio::time::sleep(d).await;
        wait = pool.upgrade().and_then(|p| p.sweep());
    }
}
