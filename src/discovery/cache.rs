//! Discovery results shared by the live providers of the process, keyed by what changes the
//! answer. Callers that arrive while a discovery is in flight wait for it and share its outcome,
//! failures included; a failure is never served to a later caller.

use super::select::Catalog;
use crate::error::{Error, Result};
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The control-plane endpoint override, if any (emulators, proxies).
    pub endpoint: Option<String>,
    pub region: String,
    /// Which identity lists (`origin` of the auth source, never a secret): accounts differ.
    pub identity: String,
    pub provider_filter: Vec<String>,
    pub default_context_window: u64,
    pub default_max_tokens: u64,
}

pub struct Found {
    pub catalog: Arc<Catalog>,
    pub warnings: Arc<Vec<String>>,
    pub finished: Instant,
}

impl Clone for Found {
    fn clone(&self) -> Self {
        Found { catalog: self.catalog.clone(), warnings: self.warnings.clone(), finished: self.finished }
    }
}

#[derive(Default)]
struct SlotState {
    found: Option<Found>,
    failed: Option<(Instant, Error)>,
}

#[derive(Default)]
struct Slot(tokio::sync::Mutex<SlotState>);

struct Entry {
    leases: usize,
    slot: Arc<Slot>,
}

static ENTRIES: Lazy<Mutex<HashMap<Key, Entry>>> = Lazy::new(Default::default);

fn entries() -> std::sync::MutexGuard<'static, HashMap<Key, Entry>> {
    ENTRIES.lock().unwrap_or_else(|p| p.into_inner())
}

/// A provider's hold on the cache entry for its key. Providers with the same key share one entry
/// (a gateway that reloads its config builds the new provider before it frees the old one, and
/// should not list Bedrock again); the last one to go drops it, so results never outlive every
/// provider that could use them, and an unloaded plugin leaves none behind.
pub struct Lease {
    key: Key,
    slot: Arc<Slot>,
}

impl Lease {
    pub fn take(key: Key) -> Lease {
        let mut entries = entries();
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry { leases: 0, slot: Arc::default() });
        entry.leases += 1;
        Lease { slot: entry.slot.clone(), key }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut entries = entries();
        if let Some(entry) = entries.get_mut(&self.key) {
            entry.leases -= 1;
            if entry.leases == 0 {
                entries.remove(&self.key);
            }
        }
        if entries.is_empty() {
            // Replaced, not cleared: an emptied map keeps its buffer, which would outlive dlclose.
            *entries = HashMap::new();
        }
    }
}

/// Whether the answer came from the cache or from Bedrock just now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cache,
    Fresh,
}

/// The cached catalog when younger than `ttl` (and `refresh` is false), the outcome of a discovery
/// that finished after this call began, or a new discovery by `fetch`.
pub async fn get<F, Fut>(lease: &Lease, ttl: Duration, refresh: bool, fetch: F) -> Result<(Found, Origin)>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(Catalog, Vec<String>)>>,
{
    let asked = Instant::now();
    let mut state = lease.slot.0.lock().await;
    if let Some(found) = &state.found {
        let in_flight_when_asked = found.finished >= asked;
        let fresh = !refresh && found.finished.elapsed() < ttl;
        if in_flight_when_asked || fresh {
            return Ok((found.clone(), Origin::Cache));
        }
    }
    if let Some((finished, e)) = &state.failed {
        if *finished >= asked {
            return Err(e.clone());
        }
    }
    match fetch().await {
        Ok((catalog, warnings)) => {
            let found = Found { catalog: Arc::new(catalog), warnings: Arc::new(warnings), finished: Instant::now() };
            state.found = Some(found.clone());
            state.failed = None;
            Ok((found, Origin::Fresh))
        }
        Err(e) => {
            state.failed = Some((Instant::now(), e.clone()));
            Err(e)
        }
    }
}
