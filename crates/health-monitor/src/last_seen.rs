//! The last-seen registry: when each service last answered as healthy.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::SystemTime,
};

/// Maps a service name to the wall-clock time of its last healthy result.
///
/// Monitors record into the [process-wide default](Self::global) unless built with their
/// own registry; idle watchers read it to decide when a service was last used.
#[derive(Debug, Default)]
pub struct LastSeenRegistry {
    seen: Mutex<HashMap<Arc<str>, SystemTime>>,
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
        self.map().get(name).copied()
    }

    /// Records that `name` was healthy at `at`.
    pub fn record(&self, name: &Arc<str>, at: SystemTime) {
        let mut map = self.map();
        match map.get_mut(&**name) {
            Some(seen) => *seen = at,
            None => {
                map.insert(name.clone(), at);
            }
        }
    }

    /// Forgets `name`.
    pub fn remove(&self, name: &str) {
        self.map().remove(name);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, SystemTime>> {
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
}
