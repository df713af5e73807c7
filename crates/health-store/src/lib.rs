//! The durable state of the health toolkit (SPEC §9.1) in one embedded SQLite file:
//! each monitor's [`MonitorState`](health_types::MonitorState) and the
//! [`Outbox`](health_types::Outbox) notifications wait in until they are delivered.
//!
//! [`Store`] implements both ports of `health_types::persist`: monitors report through
//! [`StateSink`](health_types::StateSink) (queued, committed in batches by a writer
//! thread), the dispatcher delivers from the `Outbox`. It also keeps history (SPEC
//! §9.2) through the ports of `health_types::history`: monitors report checks and
//! status changes to its [`HistorySink`](health_types::HistorySink) (rolled up per
//! minute in memory, written by the same writer), and the API and status page read
//! uptime and latency through its [`HistoryReader`](health_types::HistoryReader).
//! SQLite (bundled, WAL mode) because it is well kept, is one file with no server, lets
//! the API read while the writer commits, and makes the outbox queries and the history
//! rollups plain SQL.

mod error;
mod history;
mod history_read;
#[cfg(test)]
mod history_tests;
mod history_write;
mod options;
mod outbox;
mod schema;
mod store;
#[cfg(test)]
mod tests;
mod time;
mod writer;

pub use self::{error::StoreError, options::StoreOptions, store::Store};
