//! `__NAME__`: a Switchyard plugin.
//!
//! `__NAME__.hello` {"name": "Ada"} -> {"greeting": "Hello, Ada!", "count": 1},
//! where `count` is kept in the host's key-value store across swaps.
//! Returning false with `err` filled answers the client with that code; a
//! panic (a trap) becomes the failure PLUGIN_FAILED.
//!
//! `switchyard plugin build` writes the module `switchyard` (sdk/zig) and the
//! C bindings it wraps into build/.
const std = @import("std");
const sy = @import("switchyard");

export fn exports_switchyard_plugin_handler_manifest(ret: *sy.Manifest) void {
    sy.manifest(ret, .{ .name = "__NAME__", .version = "0.1.0", .claims = &.{"__NAME__.*"} });
}

export fn exports_switchyard_plugin_handler_handle(msg: *sy.Message, ret: *sy.String, err: *sy.Failure) bool {
    defer sy.freeMessage(msg);
    if (!std.mem.eql(u8, sy.bytes(msg.type), "__NAME__.hello"))
        return sy.fail(err, "UNKNOWN_ACTION", "the only action is __NAME__.hello");

    var arena = std.heap.ArenaAllocator.init(std.heap.c_allocator);
    defer arena.deinit();
    const scratch = arena.allocator();
    const Hello = struct { name: []const u8 };
    const hello = std.json.parseFromSliceLeaky(Hello, scratch, sy.bytes(msg.data), .{ .ignore_unknown_fields = true }) catch
        return sy.fail(err, "INVALID_DATA", "expected {\"name\": \"...\"}");

    var count: u64 = 1;
    if (sy.kv.get(scratch, "count") catch @panic("out of memory")) |stored|
        count += std.fmt.parseInt(u64, stored, 10) catch 0;
    const text = std.fmt.allocPrint(scratch, "{d}", .{count}) catch @panic("out of memory");
    if (!sy.kv.set("count", text, err)) return false; // the host's failure, passed on

    const greeting = std.fmt.allocPrint(scratch, "Hello, {s}!", .{hello.name}) catch @panic("out of memory");
    const reply = std.json.Stringify.valueAlloc(scratch, .{ .greeting = greeting, .count = count }, .{}) catch @panic("out of memory");
    ret.* = sy.string(reply);
    return true;
}
