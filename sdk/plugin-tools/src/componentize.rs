//! From a language's own compiler output to a plugin component, inside the
//! host binary: C bindings for the plugin world (`wit-bindgen-c`), and the
//! component encoding of a core WebAssembly module (`wit-component`), with
//! WASI preview 1 adapted to preview 2 by the reactor adapter that wasmtime
//! publishes. A plugin author needs neither `wit-bindgen` nor `wasm-tools`.
//!
//! Both work on the newest contract, `switchyard:plugin@0.2.0`, world
//! `plugin`, compiled into the binary.

use anyhow::Context;
use std::path::Path;
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{Resolve, WorldId};

/// The WIT text of the contract plugins are built against.
pub const WIT: &str = include_str!("../../../wit/v0.2.0/plugin.wit");

/// The world a plugin targets.
pub const WORLD: &str = "plugin";

fn plugin_world() -> anyhow::Result<(Resolve, WorldId)> {
    let mut resolve = Resolve::default();
    let package = resolve.push_str("plugin.wit", WIT).context("the built-in WIT does not parse")?;
    let world = resolve.select_world(&[package], Some(WORLD))?;
    Ok((resolve, world))
}

/// Write the C bindings for the plugin world into `dir`: `plugin.h` and
/// `plugin.c` (the canonical-ABI glue, `cabi_realloc`, post-return hooks).
/// No type-information object: [`component`] embeds the world itself.
pub fn c_bindings(dir: &Path) -> anyhow::Result<()> {
    let (mut resolve, world) = plugin_world()?;
    let mut files = wit_bindgen_core::Files::default();
    let opts = wit_bindgen_c::Opts { no_object_file: true, ..Default::default() };
    opts.build().generate(&mut resolve, world, &mut files).context("cannot generate the C bindings")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, bytes) in files.iter() {
        let mut bytes = bytes.to_vec();
        if name.ends_with(".c") {
            // The glue links against the type-information object it was not
            // asked for; [`component`] embeds the world instead.
            bytes.extend_from_slice(
                format!("\n// The world's types are embedded by `switchyard plugin build`.\nvoid __component_type_object_force_link_{WORLD}(void) {{}}\n").as_bytes(),
            );
        }
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The component of world `plugin` for `core`, a core module that exports
/// the world's functions under their canonical names (and possibly imports
/// `wasi_snapshot_preview1`, which the reactor adapter provides).
pub fn component(core: &[u8]) -> anyhow::Result<Vec<u8>> {
    let (resolve, world) = plugin_world()?;
    let mut module = core.to_vec();
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8, false)?;
    ComponentEncoder::default()
        .module(&module)
        .context("not a core module for the plugin world")?
        .validate(true)
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
        .context("cannot encode the component")
}

/// The marker that starts the WASI adapter's memory in a Go plugin's data
/// (`sdk/go/adapter.go`): 31 bytes and a NUL, then the bump pointer's
/// 4 bytes, then the memory itself, [`ADAPTER_MEMORY`] bytes from the end of
/// the marker.
const ADAPTER_MARKER: &[u8] = b"switchyard:go-adapter-memory:v1";
const ADAPTER_MEMORY: u32 = 3 << 16;

/// `core` with an added export `cabi_realloc_adapter`, for Go modules.
///
/// The WASI adapter needs memory of its own during `_initialize`, before any
/// Go code may run, and growing the memory behind Go's back corrupts Go's
/// heap. So the Go SDK reserves it in its data, after a marker; this adds a
/// bump allocator over that reservation, which wit-component hands to the
/// adapter instead of the module's `cabi_realloc`. It only allocates (the
/// adapter never frees) and traps when the reservation is exhausted.
pub fn with_adapter_memory(core: &[u8]) -> anyhow::Result<Vec<u8>> {
    use wasm_encoder::{CodeSection, ExportKind, ExportSection, FunctionSection, RawSection};
    use wasmparser::{ExternalKind, Parser, Payload, TypeRef, ValType};

    // Pass 1: the reservation's address, the allocator's type, the new index.
    let (mut marker, mut type_index, mut imported, mut defined) = (None, None, 0u32, 0u32);
    for payload in Parser::new(0).parse_all(core) {
        match payload.context("not a WebAssembly module")? {
            Payload::TypeSection(types) => {
                for (index, ty) in types.into_iter_err_on_gc_types().enumerate() {
                    let ty = ty?;
                    if ty.params() == [ValType::I32; 4] && ty.results() == [ValType::I32] && type_index.is_none() {
                        type_index = Some(index as u32);
                    }
                }
            }
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    imported += matches!(import?.ty, TypeRef::Func(_)) as u32;
                }
            }
            Payload::FunctionSection(functions) => defined = functions.count(),
            Payload::ExportSection(exports) => {
                for export in exports {
                    anyhow::ensure!(export?.name != "cabi_realloc_adapter", "the module already exports cabi_realloc_adapter");
                }
            }
            Payload::DataSection(segments) => {
                for segment in segments {
                    let segment = segment?;
                    let wasmparser::DataKind::Active { memory_index: 0, offset_expr } = segment.kind else { continue };
                    let Ok(wasmparser::Operator::I32Const { value }) = offset_expr.get_operators_reader().read() else {
                        continue;
                    };
                    let found = segment.data.windows(ADAPTER_MARKER.len()).position(|w| w == ADAPTER_MARKER);
                    if let Some(at) = found {
                        anyhow::ensure!(marker.is_none(), "the adapter-memory marker occurs more than once");
                        marker = Some(value as u32 + at as u32);
                    }
                }
            }
            _ => {}
        }
    }
    let marker = marker.context("no adapter-memory marker in the data: is the plugin built with the Switchyard Go SDK?")?;
    let type_index = type_index.context("no function type (i32, i32, i32, i32) -> i32 (no cabi_realloc?)")?;
    let next_free = marker + 32;
    let (start, limit) = (marker + 40, marker + 32 + ADAPTER_MEMORY);

    // Pass 2: every section as it was, but functions, exports and code
    // with the allocator appended.
    let mut module = wasm_encoder::Module::new();
    let (mut code, mut remaining) = (CodeSection::new(), 0);
    for payload in Parser::new(0).parse_all(core) {
        let payload = payload?;
        match &payload {
            Payload::FunctionSection(functions) => {
                let mut section = FunctionSection::new();
                for ty in functions.clone() {
                    section.function(ty?);
                }
                module.section(section.function(type_index));
            }
            Payload::ExportSection(exports) => {
                let mut section = ExportSection::new();
                for export in exports.clone() {
                    let export = export?;
                    let kind = match export.kind {
                        ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
                        ExternalKind::Table => ExportKind::Table,
                        ExternalKind::Memory => ExportKind::Memory,
                        ExternalKind::Global => ExportKind::Global,
                        ExternalKind::Tag => ExportKind::Tag,
                    };
                    section.export(export.name, kind, export.index);
                }
                module.section(section.export("cabi_realloc_adapter", ExportKind::Func, imported + defined));
            }
            Payload::CodeSectionStart { count, .. } => remaining = *count,
            Payload::CodeSectionEntry(body) => {
                let range = body.range();
                code.raw(&core[range.start as usize..range.end as usize]);
                remaining -= 1;
                if remaining == 0 {
                    module.section(code.function(&bump_allocator(next_free, start, limit)));
                }
            }
            other => {
                if let Some((id, range)) = other.as_section() {
                    module.section(&RawSection { id, data: &core[range.start as usize..range.end as usize] });
                }
            }
        }
    }
    anyhow::ensure!(code.len() == defined + 1, "the module's code section does not match its functions");
    let module = module.finish();
    wasmparser::Validator::new().validate_all(&module).context("the module with cabi_realloc_adapter is invalid")?;
    Ok(module)
}

/// `cabi_realloc_adapter(old_ptr, old_len, align, new_len) -> ptr`: a bump
/// allocator from `start` to `limit`, its next free address kept at
/// `next_free` (0 until the first call); traps on a reallocation or when full.
fn bump_allocator(next_free: u32, start: u32, limit: u32) -> wasm_encoder::Function {
    use wasm_encoder::{BlockType, Instruction as I, MemArg, ValType};
    let word = MemArg { offset: 0, align: 2, memory_index: 0 };
    let (old_ptr, align, new_len, ptr) = (0, 2, 3, 4);
    let mut f = wasm_encoder::Function::new([(1, ValType::I32)]);
    for instruction in [
        // if old_ptr != 0: unreachable
        I::LocalGet(old_ptr),
        I::If(BlockType::Empty),
        I::Unreachable,
        I::End,
        // ptr = *next_free, or start the first time
        I::I32Const(next_free as i32),
        I::I32Load(word),
        I::LocalTee(ptr),
        I::I32Eqz,
        I::If(BlockType::Empty),
        I::I32Const(start as i32),
        I::LocalSet(ptr),
        I::End,
        // ptr = (ptr + align - 1) & -align
        I::LocalGet(ptr),
        I::LocalGet(align),
        I::I32Add,
        I::I32Const(1),
        I::I32Sub,
        I::I32Const(0),
        I::LocalGet(align),
        I::I32Sub,
        I::I32And,
        I::LocalSet(ptr),
        // if ptr > limit || new_len > limit - ptr: unreachable
        I::LocalGet(ptr),
        I::I32Const(limit as i32),
        I::I32GtU,
        I::LocalGet(new_len),
        I::I32Const(limit as i32),
        I::LocalGet(ptr),
        I::I32Sub,
        I::I32GtU,
        I::I32Or,
        I::If(BlockType::Empty),
        I::Unreachable,
        I::End,
        // *next_free = ptr + new_len; ptr
        I::I32Const(next_free as i32),
        I::LocalGet(ptr),
        I::LocalGet(new_len),
        I::I32Add,
        I::I32Store(word),
        I::LocalGet(ptr),
        I::End,
    ] {
        f.instruction(&instruction);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_bindings_declare_the_handler_exports() {
        let dir = tempfile::tempdir().unwrap();
        c_bindings(dir.path()).unwrap();
        let header = std::fs::read_to_string(dir.path().join("plugin.h")).unwrap();
        assert!(header.contains("exports_switchyard_plugin_handler_handle("), "{header}");
        assert!(header.contains("switchyard_plugin_kv_get("));
        assert!(dir.path().join("plugin.c").is_file());
    }

    #[test]
    fn a_module_without_the_exports_is_refused() {
        // The empty module: valid WebAssembly, but no `handler` exports.
        let empty = b"\0asm\x01\0\0\0";
        let error = component(empty).unwrap_err();
        assert!(format!("{error:#}").contains("handler"), "{error:#}");
    }

    /// A module shaped like a Go plugin's: a memory, a function of the
    /// allocator's type, the marker in an active data segment at 1000.
    fn go_like_module() -> Vec<u8> {
        use wasm_encoder::*;
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([ValType::I32; 4], [ValType::I32]);
        module.section(&types);
        module.section(FunctionSection::new().function(0));
        module.section(MemorySection::new().memory(MemoryType {
            minimum: 8,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        }));
        module.section(ExportSection::new().export("memory", ExportKind::Memory, 0));
        let mut body = Function::new([]);
        body.instruction(&Instruction::I32Const(0)).instruction(&Instruction::End);
        module.section(CodeSection::new().function(&body));
        let mut data = b"prefix".to_vec();
        data.extend_from_slice(ADAPTER_MARKER);
        module.section(DataSection::new().active(0, &ConstExpr::i32_const(1000), data));
        module.finish()
    }

    #[test]
    fn the_adapter_allocator_bumps_through_the_reservation_and_traps_when_full() {
        let module = with_adapter_memory(&go_like_module()).unwrap();
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, &module).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let alloc = instance
            .get_typed_func::<(i32, i32, i32, i32), i32>(&mut store, "cabi_realloc_adapter")
            .unwrap();
        // The marker starts at 1006; the memory at 1006 + 40, aligned.
        assert_eq!(alloc.call(&mut store, (0, 0, 8, 10)).unwrap(), 1048);
        assert_eq!(alloc.call(&mut store, (0, 0, 4, 4)).unwrap(), 1060);
        assert_eq!(alloc.call(&mut store, (0, 0, 4096, 16)).unwrap(), 4096);
        // Past the reservation, or a reallocation: a trap, not a corrupted heap.
        assert!(alloc.call(&mut store, (0, 0, 8, ADAPTER_MEMORY as i32)).is_err());
        assert!(alloc.call(&mut store, (1048, 10, 8, 20)).is_err());
    }

    #[test]
    fn a_module_without_the_marker_is_refused() {
        let mut module = go_like_module();
        let at = module.windows(ADAPTER_MARKER.len()).position(|w| w == ADAPTER_MARKER).unwrap();
        module[at] = b'S';
        let error = with_adapter_memory(&module).unwrap_err();
        assert!(format!("{error:#}").contains("marker"), "{error:#}");
    }
}
