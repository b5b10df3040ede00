//! Tools for plugin authors, behind `switchyard plugin new`, `plugin build`
//! and `plugin inspect`: [`scaffold`] writes a project from the
//! [`templates`] (described by its [`project`] file), [`build`] runs the
//! language's compiler and, for C, Zig and Go, [`componentize`] turns the
//! core module into a component, with the pinned [`toolchain`]s installed
//! on first use; [`inspect`] loads a component the way the registry would.
//!
//! Kept out of the engine library so that serving never links the
//! bindings generator and component encoder. Only [`inspect`] uses the
//! engine.

pub mod build;
pub mod componentize;
pub mod inspect;
pub mod project;
pub mod scaffold;
pub mod templates;
pub mod toolchain;

pub use build::build;
pub use project::Lang;
pub use scaffold::new_project;
