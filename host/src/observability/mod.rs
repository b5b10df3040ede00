//! What the host reports about itself: [`metrics`] (Prometheus, served at
//! `/metrics`) and [`system`] (host cpu, memory, disk and network figures,
//! sampled on a timer for the `system` capability).

pub mod metrics;
pub mod system;
