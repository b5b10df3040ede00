//! The client SDK's tests, one module per area, in one test binary (one
//! link instead of three): a scripted server in `support` plays the host.

mod reconnect;
mod requests;
mod support;
mod worker;
