//! [`StoreError`]: what went wrong with the store, naming its path; the reason is the
//! error's source.

use std::{
    error::Error,
    path::{Path, PathBuf},
};

/// The cause of a [`StoreError`], kept opaque so that the SQLite binding is no part of
/// this crate's API.
pub(crate) type Cause = Box<dyn Error + Send + Sync + 'static>;

/// The store could not be opened, read or written.
///
/// `Display` names the store's path and what failed; the reason (permission denied,
/// file is not a database, database is locked, ...) is the [`source`](Error::source),
/// so print the whole chain (`health_types::ErrorChain`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The directory that should hold the store could not be created.
    #[error("cannot create the directory of store {}", path.display())]
    CreateDir {
        /// The store's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be opened as a SQLite database.
    #[error("cannot open store {}", path.display())]
    Open {
        /// The store's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: Cause,
    },
    /// The store was written by a newer version: its schema is unknown here.
    #[error(
        "store {}: schema version {found} is newer than this healthd (knows {known}); use a newer healthd or another [storage] path",
        path.display()
    )]
    TooNew {
        /// The store's path.
        path: PathBuf,
        /// The schema version in the file.
        found: i64,
        /// The newest schema version this build knows.
        known: u32,
    },
    /// The file is a SQLite database, but another application's.
    #[error(
        "store {}: a SQLite database of another application, not a healthd store; use another [storage] path",
        path.display()
    )]
    Foreign {
        /// The store's path.
        path: PathBuf,
    },
    /// A migration to a newer schema version failed (and was rolled back).
    #[error("cannot migrate store {} to schema version {version}", path.display())]
    Migrate {
        /// The store's path.
        path: PathBuf,
        /// The version the failed migration leads to.
        version: u32,
        /// Why.
        #[source]
        source: Cause,
    },
    /// This process has the store open already: it is opened once per process.
    #[error("store {} is already open in this process", path.display())]
    AlreadyOpen {
        /// The store's path.
        path: PathBuf,
    },
    /// Another process has the store open (two daemons on one file would each close
    /// the other's runs and write over its states).
    #[error("store {} is in use by another process", path.display())]
    InUse {
        /// The store's path.
        path: PathBuf,
    },
    /// Reading from the store failed, or it held a value this build cannot read.
    #[error("cannot read store {}", path.display())]
    Read {
        /// The store's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: Cause,
    },
    /// Writing to the store failed; a failed batch is kept and retried.
    #[error("cannot write store {}", path.display())]
    Write {
        /// The store's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: Cause,
    },
    /// The store's writer thread has stopped (the store was closed, or the writer
    /// panicked): nothing more is written.
    #[error("the writer of store {} has stopped", path.display())]
    WriterStopped {
        /// The store's path.
        path: PathBuf,
    },
}

impl StoreError {
    /// The path of the store the error is about (`:memory:` for an in-memory one).
    pub fn path(&self) -> &Path {
        match self {
            StoreError::CreateDir { path, .. }
            | StoreError::Open { path, .. }
            | StoreError::TooNew { path, .. }
            | StoreError::Foreign { path }
            | StoreError::Migrate { path, .. }
            | StoreError::AlreadyOpen { path }
            | StoreError::InUse { path }
            | StoreError::Read { path, .. }
            | StoreError::Write { path, .. }
            | StoreError::WriterStopped { path } => path,
        }
    }
}
