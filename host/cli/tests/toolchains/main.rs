//! `switchyard plugin new` and `plugin build` with the language
//! toolchains, in their own binary: the toolchains would starve the timing
//! of the other CLI tests if they ran beside them.

mod scaffold;
mod toolchain;
