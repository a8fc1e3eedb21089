//! # warden-metrics
//!
//! Metrics: collected from the system and pushed by applications, checked,
//! queued, kept in an in-memory series store that policies query, written to
//! batch files and exposed on `/metrics`.
//!
//! - [`collect`]: system and process collectors.
//! - [`ingest`]: the recording API and its bounded queue.
//! - [`push`]: batches pushed over HTTP, checked whole.
//! - [`validate`]: what is accepted (names, values, no personal data).
//! - [`series`], [`store`], [`aggregate`]: series identity, the store, window aggregates.
//! - [`persist`]: batch files, retention, refill on start.
//! - [`expose`]: the store in Prometheus' format.
//! - [`pipeline`]: all of it started together, as the daemon runs it.
//!
//! Layering: a source layer. It depends on `warden-core` only and must never
//! depend on plugins, policies, resources or the runtime: they read the store,
//! the store never reads them.

#![deny(missing_docs)]

pub mod aggregate;
pub mod collect;
pub mod config;
pub mod expose;
pub mod ingest;
pub mod persist;
pub mod pipeline;
pub mod push;
pub mod series;
pub mod store;
pub mod validate;

pub use aggregate::Aggregation;
pub use config::MetricsConfig;
pub use ingest::{Handle, Metrics, RecordError, Stats};
pub use pipeline::Pipeline;
pub use series::{Kind, SeriesError};
pub use store::{SeriesStore, StoreLimits};
pub use validate::{Invalid, MetaValue, Operation};
