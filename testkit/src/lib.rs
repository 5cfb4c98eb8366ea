//! Helpers the test trees share, so that each is written once. A
//! dev-dependency only: nothing here belongs in a shipped binary.
//!
//! - [`kafka`]: [`kafka::PrivateBroker`], an Apache Kafka node of the test's
//!   own (`scripts/kafka.sh` on its own ports and state dir) that it may kill
//!   and restart without disturbing tests beside it.
//! - [`ports`]: [`ports::free_port`], a loopback port nothing listens on, and
//!   [`ports::restartable_port`], one no outgoing connection can take while
//!   its server is down.
//! - [`process`]: [`process::peak_rss_kib`], a child's peak resident memory.
//! - [`names`]: [`names::unique`], names no other test run uses.
//! - [`postgres`]: the admin URL, and databases created and dropped per test.
//! - [`cleanup`]: [`cleanup::run_cleaned`], a cleanup that runs even when the
//!   test panics, and [`on_both_backends!`], one test on PostgreSQL and SQLite.

pub mod cleanup;
pub mod kafka;
pub mod names;
pub mod ports;
pub mod postgres;
pub mod process;

pub use cleanup::run_cleaned;
pub use ports::free_port;
