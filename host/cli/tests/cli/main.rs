//! The `switchyard` command's tests, one module per area, in one test
//! binary, each running the built binary against a real host. The
//! toolchain tests have their own binary (`tests/toolchains/`).

mod commands;
mod deploys;
