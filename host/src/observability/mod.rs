//! What the host reports about itself: [`metrics`] (Prometheus, served at
//! `/metrics`), [`system`] (host cpu, memory, disk and network figures,
//! sampled on a timer for the `system` capability) and [`feed`] (the admin
//! feed the dashboard watches, counted only while someone watches), and
//! [`allocations`], a counting allocator for the tests and benches that
//! prove a path allocates nothing.

#[doc(hidden)]
pub mod allocations;
pub mod feed;
pub mod metrics;
pub mod system;
