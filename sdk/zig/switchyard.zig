//! Switchyard plugins in Zig: the module `switchyard`.
//!
//! `switchyard plugin build` (a project with `lang = "zig"`) writes this file
//! into `build/` beside the C bindings of world `plugin` of
//! `switchyard:plugin@0.2.0` (`plugin.h`, `plugin.c`, the same generator as
//! `wit-bindgen c`) and gives it to `main.zig` as `@import("switchyard")`.
//!
//! A plugin exports the two functions that `plugin.h` declares, with its C
//! types (re-exported here):
//!
//!     export fn exports_switchyard_plugin_handler_manifest(ret: *sy.Manifest) void
//!     export fn exports_switchyard_plugin_handler_handle(msg: *sy.Message, ret: *sy.String, err: *sy.Failure) bool
//!
//! The C memory rules hold: the message's strings are the plugin's to free
//! (`freeMessage`), and everything handed back to the host must come from
//! `malloc` (`string`), since the generated post-return functions `free` it.
//! Every import of the world is in `c`; the ones most plugins use have
//! helpers below.
const std = @import("std");

/// The C bindings: every type and import of the world.
pub const c = @cImport(@cInclude("plugin.h"));

pub const String = c.plugin_string_t;
pub const Manifest = c.exports_switchyard_plugin_handler_plugin_manifest_t;
pub const Message = c.exports_switchyard_plugin_handler_message_t;
pub const Failure = c.exports_switchyard_plugin_handler_failure_t;

/// A string for the host: `s` copied into malloc'd memory.
pub fn string(s: []const u8) String {
    var out: String = undefined;
    c.plugin_string_dup_n(&out, s.ptr, s.len);
    return out;
}

/// The bytes of a string the host passed in (valid until it is freed).
pub fn bytes(s: String) []const u8 {
    return if (s.len == 0) "" else s.ptr[0..s.len];
}

/// A string that borrows `s`, for passing to an import (which copies it).
fn borrow(s: []const u8) String {
    return .{ .ptr = @constCast(s.ptr), .len = s.len };
}

/// Free the message's strings, once done with them.
pub fn freeMessage(msg: *Message) void {
    c.exports_switchyard_plugin_handler_message_free(msg);
}

/// Fill the manifest: `sy.manifest(ret, .{ .name = "sum", .version = "0.1.0", .claims = &.{"sum"} })`.
pub fn manifest(ret: *Manifest, m: struct {
    name: []const u8,
    version: []const u8,
    description: []const u8 = "",
    claims: []const []const u8,
    /// Call `lifecycle.tick` this often (only with the `plugin-with-hooks` world).
    tick_interval_ms: ?u32 = null,
}) void {
    const memory = std.c.malloc(@max(1, m.claims.len) * @sizeOf(String)) orelse @panic("out of memory");
    const claims: [*]String = @ptrCast(@alignCast(memory));
    for (m.claims, 0..) |claim, i| claims[i] = string(claim);
    ret.* = .{
        .name = string(m.name),
        .version = string(m.version),
        .description = string(m.description),
        .claims = .{ .ptr = claims, .len = m.claims.len },
        .tick_interval_ms = .{ .is_some = m.tick_interval_ms != null, .val = m.tick_interval_ms orelse 0 },
    };
}

/// Answer with the failure `code`: `return sy.fail(err, "INVALID_DATA", "...")`.
pub fn fail(err: *Failure, code: []const u8, message: []const u8) bool {
    err.* = .{ .code = string(code), .message = string(message) };
    return false;
}

pub const Level = enum(u8) { trace, debug, info, warn, @"error" };

/// A line in the host's log, tagged with the plugin's name.
pub fn log(level: Level, message: []const u8) void {
    var s = borrow(message);
    c.switchyard_plugin_log_log(@intFromEnum(level), &s);
}

/// The plugin's key-value store, in the host; it survives hot swaps.
pub const kv = struct {
    /// The value under `key`, copied into `allocator`'s memory, or null.
    pub fn get(allocator: std.mem.Allocator, key: []const u8) std.mem.Allocator.Error!?[]u8 {
        var k = borrow(key);
        var value: String = undefined;
        if (!c.switchyard_plugin_kv_get(&k, &value)) return null;
        defer c.plugin_string_free(&value);
        return try allocator.dupe(u8, bytes(value));
    }

    /// Store `value` under `key`; false, with the host's failure in `err`
    /// (`KV_QUOTA_EXCEEDED`...), when it is refused.
    pub fn set(key: []const u8, value: []const u8, err: *Failure) bool {
        var k = borrow(key);
        var v = borrow(value);
        return c.switchyard_plugin_kv_set(&k, &v, err);
    }

    pub fn delete(key: []const u8) void {
        var k = borrow(key);
        c.switchyard_plugin_kv_delete(&k);
    }
};

/// Publish the JSON text `json` on `topic`; false, with the host's failure
/// in `err`, when it is refused.
pub fn publish(topic: []const u8, json: []const u8, err: *Failure) bool {
    var t = borrow(topic);
    var j = borrow(json);
    return c.switchyard_plugin_events_publish(&t, &j, err);
}
