//! Discovery results shared by every provider in the process (a gateway that reloads its config
//! builds a new provider and should not list Bedrock again), keyed by what changes the answer.
//! Callers that arrive while a discovery is in flight wait for it and share its outcome, failures
//! included; a failure is never served to a later caller.

use super::select::Catalog;
use crate::error::{Error, Result};
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
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

static SLOTS: Lazy<Mutex<HashMap<Key, Arc<Slot>>>> = Lazy::new(Default::default);
static PROVIDERS: AtomicUsize = AtomicUsize::new(0);

fn slots() -> std::sync::MutexGuard<'static, HashMap<Key, Arc<Slot>>> {
    SLOTS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A provider that may use the cache; the last one to go empties it, so that an unloaded plugin
/// leaves no discovery results behind.
pub struct Lease(());

impl Lease {
    pub fn take() -> Lease {
        PROVIDERS.fetch_add(1, Ordering::AcqRel);
        Lease(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if PROVIDERS.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Replaced, not cleared: a cleared map keeps its buffer, which would outlive dlclose.
            drop(std::mem::take(&mut *slots()));
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
pub async fn get<F, Fut>(key: &Key, ttl: Duration, refresh: bool, fetch: F) -> Result<(Found, Origin)>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(Catalog, Vec<String>)>>,
{
    let asked = Instant::now();
    let slot = slots().entry(key.clone()).or_default().clone();
    let mut state = slot.0.lock().await;
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
