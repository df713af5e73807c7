//! The last-seen registry: when each service last answered as healthy.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use health_types::duration_nanos;

/// Maps a service name to the wall-clock time of its last healthy result.
///
/// Monitors record into the [process-wide default](Self::global) unless built with their
/// own registry; idle watchers read it to decide when a service was last used.
///
/// Each name has a slot that its monitors hold on to, so recording a healthy result is
/// one atomic store: no lock, no lookup on a monitor's hot path. Times are kept to the
/// nanosecond from the Unix epoch (earlier ones are recorded as the epoch).
#[derive(Debug, Default)]
pub struct LastSeenRegistry {
    seen: Mutex<HashMap<Arc<str>, Arc<Slot>>>,
}

/// The last-seen time of one name.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Nanoseconds since the Unix epoch, plus one; 0 when never seen.
    at: AtomicU64,
    /// The slot is in the registry's map (cleared by [`LastSeenRegistry::remove`]).
    listed: AtomicBool,
}

impl Slot {
    fn get(&self) -> Option<SystemTime> {
        match self.at.load(Ordering::Relaxed) {
            0 => None,
            n => Some(UNIX_EPOCH + Duration::from_nanos(n - 1)),
        }
    }

    fn set(&self, at: SystemTime) {
        // Saturating: a time past 2554 is kept as the latest time the slot can hold.
        let nanos = at.duration_since(UNIX_EPOCH).map_or(0, duration_nanos);
        self.at.store(nanos.saturating_add(1), Ordering::Relaxed);
    }
}

impl LastSeenRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide registry.
    pub fn global() -> Arc<LastSeenRegistry> {
        static GLOBAL: OnceLock<Arc<LastSeenRegistry>> = OnceLock::new();
        GLOBAL.get_or_init(Default::default).clone()
    }

    /// When `name` was last seen healthy.
    pub fn get(&self, name: &str) -> Option<SystemTime> {
        self.map().get(name).and_then(|slot| slot.get())
    }

    /// Records that `name` was healthy at `at`.
    pub fn record(&self, name: &Arc<str>, at: SystemTime) {
        self.slot(name).set(at);
    }

    /// Forgets `name`.
    pub fn remove(&self, name: &str) {
        if let Some(slot) = self.map().remove(name) {
            slot.listed.store(false, Ordering::SeqCst);
        }
    }

    /// The slot of `name`, created (empty) if it has none.
    pub(crate) fn slot(&self, name: &Arc<str>) -> Arc<Slot> {
        let mut map = self.map();
        if let Some(slot) = map.get(&**name) {
            return slot.clone();
        }
        let slot = Arc::new(Slot {
            at: AtomicU64::new(0),
            listed: AtomicBool::new(true),
        });
        map.insert(name.clone(), slot.clone());
        slot
    }

    /// Records `at` into `slot`, the slot of `name` that a monitor holds; when the name
    /// was removed since, it is listed again with this time.
    pub(crate) fn record_in(&self, slot: &Slot, name: &Arc<str>, at: SystemTime) {
        slot.set(at);
        // Checked after the store: a remove() before it is seen here and the name is
        // listed again; one after it removes this record too, as it should.
        if !slot.listed.load(Ordering::SeqCst) {
            self.record(name, at);
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Slot>>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn records_and_forgets() {
        let registry = LastSeenRegistry::new();
        let name: Arc<str> = "api".into();
        assert_eq!(registry.get("api"), None);
        let t = UNIX_EPOCH + Duration::from_secs(5);
        registry.record(&name, t);
        registry.record(&name, t + Duration::from_secs(1));
        assert_eq!(registry.get("api"), Some(t + Duration::from_secs(1)));
        registry.remove("api");
        assert_eq!(registry.get("api"), None);
    }

    #[test]
    fn a_monitors_slot_records_without_a_lookup_and_survives_a_remove() {
        let registry = LastSeenRegistry::new();
        let name: Arc<str> = "api".into();
        let slot = registry.slot(&name);
        assert_eq!(registry.get("api"), None);
        let t = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        registry.record_in(&slot, &name, t);
        assert_eq!(registry.get("api"), Some(t));
        registry.remove("api");
        assert_eq!(registry.get("api"), None);
        registry.record_in(&slot, &name, t + Duration::from_secs(1));
        assert_eq!(registry.get("api"), Some(t + Duration::from_secs(1)));
        // Before the epoch: kept as the epoch.
        registry.record(&name, UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(registry.get("api"), Some(UNIX_EPOCH));
    }
}
