//! `zig-sum`: answers `sum` for {"numbers": [1, 2.5, 3]} with {"sum": 6.5, "count": 3}.
//!
//! `switchyard plugin build` writes the module `switchyard` (sdk/zig) and the
//! C bindings of world `plugin` it wraps into build/; this file exports the
//! two handler functions the bindings declare.
const std = @import("std");
const sy = @import("switchyard");

export fn exports_switchyard_plugin_handler_manifest(ret: *sy.Manifest) void {
    sy.manifest(ret, .{ .name = "zig-sum", .version = "0.1.0", .description = "Sums a list of numbers (Zig)", .claims = &.{"sum"} });
}

export fn exports_switchyard_plugin_handler_handle(msg: *sy.Message, ret: *sy.String, err: *sy.Failure) bool {
    defer sy.freeMessage(msg); // the message's strings are ours to free
    var arena = std.heap.ArenaAllocator.init(std.heap.c_allocator);
    defer arena.deinit();

    const Input = struct { numbers: []const f64 };
    const input = std.json.parseFromSliceLeaky(Input, arena.allocator(), sy.bytes(msg.data), .{ .ignore_unknown_fields = true }) catch
        return sy.fail(err, "INVALID_DATA", "expected {\"numbers\": [number, ...]}");
    var sum: f64 = 0;
    for (input.numbers) |n| sum += n;
    if (!std.math.isFinite(sum)) return sy.fail(err, "OUT_OF_RANGE", "the sum is not a finite number");

    const reply = std.fmt.allocPrint(arena.allocator(), "{{\"sum\":{d},\"count\":{d}}}", .{ sum, input.numbers.len }) catch
        @panic("out of memory");
    sy.log(.debug, reply);
    ret.* = sy.string(reply); // a malloc'd copy: the post-return hook frees it
    return true;
}
