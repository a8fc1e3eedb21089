//! Resources: what applications register with Warden (and, later, what it
//! discovers on the machine), served to plugins through `list-resources`.

pub mod registry;

pub use registry::{Registration, Registry};
