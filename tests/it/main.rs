//! berth's integration tests: one binary (link time), one module per area.

mod bad_input;
mod buckets;
mod budget;
mod concurrency;
mod conformance;
mod delta;
mod dlt_surface;
mod fuzz;
mod hostile;
mod memory;
mod merge_property;
mod object_store;
mod plan;
mod postgres;
mod progress;
mod sink;
mod warehouse;
mod widen;
