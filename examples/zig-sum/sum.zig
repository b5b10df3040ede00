//! `zig-sum`: answers `sum` for {"numbers": [1, 2.5, 3]} with {"sum": 6.5, "count": 3}.
//!
//! No binding generator: this file speaks the component model's canonical ABI
//! for the two exports of `switchyard:plugin/handler@0.1.0` and the one import
//! it uses (`log`). `build.sh` links it with `wasm-component-ld --component-type`,
//! which wraps the core module into a component of world `plugin`.
const std = @import("std");

/// Everything (the host's copies of the arguments, scratch, the reply) lives in
/// this arena, freed once the host has read the reply (the post-return hooks).
var arena = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
const alloc = arena.allocator();

/// A `string` / `list<T>` in linear memory.
const Slice = extern struct { ptr: [*]const u8, len: usize };
fn slice(s: []const u8) Slice {
    return .{ .ptr = s.ptr, .len = s.len };
}

// Import `log: func(level: level, message: string)`; level: 0 trace .. 4 error.
extern "switchyard:plugin/log@0.1.0" fn log(level: i32, ptr: [*]const u8, len: usize) void;

/// manifest() -> plugin-manifest: a record of 3 strings and a list<string>.
const Manifest = extern struct { name: Slice, version: Slice, description: Slice, claims: Slice };
const claims = [_]Slice{slice("sum")};
var manifest_ret: Manifest = undefined;

fn manifest() callconv(.c) *Manifest {
    manifest_ret = .{
        .name = slice("zig-sum"),
        .version = slice("0.1.0"),
        .description = slice("Sums a list of numbers (Zig)"),
        .claims = .{ .ptr = @ptrCast(&claims), .len = claims.len },
    };
    return &manifest_ret;
}

/// result<string, failure>: a tag byte, then either a string or a failure record.
const HandleResult = extern struct { is_err: u8, a: Slice, b: Slice };
var handle_ret: HandleResult = undefined;

fn fail(code: []const u8, message: []const u8) *HandleResult {
    handle_ret = .{ .is_err = 1, .a = slice(code), .b = slice(message) };
    return &handle_ret;
}

/// handle(msg: message) -> result<string, failure>. The message record is
/// flattened: id, type, data, meta, then origin (connection-id, client-id as
/// tag + string, transport); only `data` is used here.
fn handle(
    _: [*]const u8, _: usize, _: [*]const u8, _: usize, // id, type
    data_ptr: [*]const u8, data_len: usize, _: [*]const u8, _: usize, // data, meta
    _: [*]const u8, _: usize, _: u32, _: [*]const u8, _: usize, _: [*]const u8, _: usize, // origin
) callconv(.c) *HandleResult {
    const Input = struct { numbers: []const f64 };
    const input = std.json.parseFromSliceLeaky(Input, alloc, data_ptr[0..data_len], .{ .ignore_unknown_fields = true }) catch
        return fail("INVALID_DATA", "expected {\"numbers\": [number, ...]}");

    var sum: f64 = 0;
    for (input.numbers) |n| sum += n;
    if (!std.math.isFinite(sum)) return fail("OUT_OF_RANGE", "the sum is not a finite number");
    const reply = std.fmt.allocPrint(alloc, "{{\"sum\":{d},\"count\":{d}}}", .{ sum, input.numbers.len }) catch
        return fail("OUT_OF_MEMORY", "reply too large");
    log(1, reply.ptr, reply.len);
    handle_ret = .{ .is_err = 0, .a = slice(reply), .b = undefined };
    return &handle_ret;
}

/// The host allocates argument strings through this.
fn cabiRealloc(old: ?[*]u8, old_len: usize, alignment: usize, new_len: usize) callconv(.c) ?[*]u8 {
    const new = alloc.rawAlloc(new_len, std.mem.Alignment.fromByteUnits(alignment), @returnAddress()) orelse return null;
    if (old) |o| @memcpy(new[0..@min(old_len, new_len)], o[0..@min(old_len, new_len)]);
    return new;
}

fn postReturn(_: *anyopaque) callconv(.c) void {
    _ = arena.reset(.retain_capacity);
}

comptime {
    @export(&manifest, .{ .name = "switchyard:plugin/handler@0.1.0#manifest" });
    @export(&handle, .{ .name = "switchyard:plugin/handler@0.1.0#handle" });
    @export(&postReturn, .{ .name = "cabi_post_switchyard:plugin/handler@0.1.0#manifest" });
    @export(&postReturn, .{ .name = "cabi_post_switchyard:plugin/handler@0.1.0#handle" });
    @export(&cabiRealloc, .{ .name = "cabi_realloc" });
}
