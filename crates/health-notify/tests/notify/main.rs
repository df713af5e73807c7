//! Integration tests of health-notify: wire formats against a local hyper receiver, the
//! dispatcher's rules under tokio's paused clock (in memory and from a durable outbox;
//! order per service and concurrency) and against real sockets, email against an
//! in-test SMTP responder, `[[notify]]` tables good and bad, and the crate docs' config
//! examples.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (STYLE.md).

mod config;
mod dispatch;
mod docs;
mod email;
mod live;
mod order;
mod outbox;
mod support;
mod wire;
