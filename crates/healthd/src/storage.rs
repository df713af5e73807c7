//! Where the daemon keeps its state (SPEC §9.1): the `[storage] path`, or the default
//! resolved from the environment, opened once as a [`Store`] with the history's
//! `[storage] retention` (SPEC §9.2).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use health_store::{Store, StoreError, StoreOptions};

/// The store's file name in a state directory.
const FILE_NAME: &str = "healthd.db";

/// The store could not be found or opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No `[storage] path`, and no directory the default could be made from.
    #[error(
        "no [storage] path, and none of STATE_DIRECTORY, XDG_STATE_HOME and HOME is set to put the default one in"
    )]
    NoDefault,
    /// The demo's temporary directory could not be made.
    #[error("cannot create a temporary directory for the demo's state store")]
    Temp(#[source] std::io::Error),
    /// The store at this path could not be opened (or is newer than this binary).
    #[error("cannot use the state store {}", .path.display())]
    Open {
        /// The store's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
}

/// The store's path: `configured`, else `$STATE_DIRECTORY/healthd.db` (the first entry,
/// as systemd may list several), else `$XDG_STATE_HOME/healthd/healthd.db`, else
/// `~/.local/state/healthd/healthd.db`. `env` reads a variable (the process's, in the
/// daemon); empty values count as unset.
pub(crate) fn store_path(
    configured: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PathBuf, StorageError> {
    if let Some(path) = configured {
        return Ok(path.to_owned());
    }
    let var = |name: &str| env(name).filter(|value| !value.is_empty());
    if let Some(dirs) = var("STATE_DIRECTORY")
        && let Some(first) = dirs.split(':').find(|dir| !dir.is_empty())
    {
        return Ok(Path::new(first).join(FILE_NAME));
    }
    if let Some(state) = var("XDG_STATE_HOME") {
        return Ok(Path::new(&state).join("healthd").join(FILE_NAME));
    }
    if let Some(home) = var("HOME") {
        return Ok(Path::new(&home)
            .join(".local/state/healthd")
            .join(FILE_NAME));
    }
    Err(StorageError::NoDefault)
}

/// Opens the store for `configured` (see [`store_path`]) with this process's
/// environment, keeping hourly history for `history_retention` (`[storage] retention`).
pub(crate) fn open(
    configured: Option<&Path>,
    history_retention: Duration,
) -> Result<Arc<Store>, StorageError> {
    let path = store_path(configured, |name| std::env::var(name).ok())?;
    let options = StoreOptions {
        history_retention,
        ..StoreOptions::default()
    };
    Store::open(&path, options)
        .map(Arc::new)
        .map_err(|source| StorageError::Open { path, source })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn path(configured: Option<&str>, env: &[(&str, &str)]) -> Result<PathBuf, String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        store_path(configured.map(Path::new), |name| env.get(name).cloned())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_default_path_follows_spec_9_1() {
        let all = [
            ("STATE_DIRECTORY", "/var/lib/healthd:/other"),
            ("XDG_STATE_HOME", "/home/u/.state"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(
            path(Some("/srv/h.db"), &all).unwrap(),
            PathBuf::from("/srv/h.db")
        );
        assert_eq!(
            path(None, &all).unwrap(),
            PathBuf::from("/var/lib/healthd/healthd.db")
        );
        assert_eq!(
            path(None, &all[1..]).unwrap(),
            PathBuf::from("/home/u/.state/healthd/healthd.db")
        );
        assert_eq!(
            path(None, &[("STATE_DIRECTORY", ""), ("HOME", "/home/u")]).unwrap(),
            PathBuf::from("/home/u/.local/state/healthd/healthd.db")
        );
        assert!(path(None, &[]).unwrap_err().contains("STATE_DIRECTORY"));
    }
}
