//! Metrics: the in-memory series store that policies query.

pub mod store;

pub use store::{SeriesStore, StoreError};
