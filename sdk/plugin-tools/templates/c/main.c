// `__NAME__`: a Switchyard plugin.
//
// `__NAME__.hello` {"name": "Ada"} -> {"greeting": "Hello, Ada!", "count": 1},
// where `count` is kept in the host's key-value store across swaps.
// Returning false with `*err` filled answers the client with that code; a
// trap (abort(), an out-of-bounds access) becomes the failure PLUGIN_FAILED.
//
// `plugin.h` and `plugin.c` (the bindings) are written into build/ by
// `switchyard plugin build`, which compiles every .c file of this folder.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "plugin.h"

// Every string handed back to the host is malloc'd: the generated
// post-return functions free them once the host has copied them.
static bool fail(exports_switchyard_plugin_handler_failure_t *err, const char *code, const char *message) {
    plugin_string_dup(&err->code, code);
    plugin_string_dup(&err->message, message);
    return false;
}

void exports_switchyard_plugin_handler_manifest(exports_switchyard_plugin_handler_plugin_manifest_t *ret) {
    plugin_string_dup(&ret->name, "__NAME__");
    plugin_string_dup(&ret->version, "0.1.0");
    plugin_string_dup(&ret->description, "");
    ret->claims.len = 1;
    ret->claims.ptr = malloc(sizeof(plugin_string_t));
    plugin_string_dup(&ret->claims.ptr[0], "__NAME__.*");
    ret->tick_interval_ms.is_some = false;
}

// The number stored under `count`, plus one.
static long next_count(plugin_string_t *key) {
    plugin_string_t stored;
    if (!switchyard_plugin_kv_get(key, &stored)) return 1;
    char text[24] = {0};
    memcpy(text, stored.ptr, stored.len < sizeof text - 1 ? stored.len : sizeof text - 1);
    plugin_string_free(&stored);
    return strtol(text, NULL, 10) + 1;
}

bool exports_switchyard_plugin_handler_handle(exports_switchyard_plugin_handler_message_t *msg, plugin_string_t *ret,
                                              exports_switchyard_plugin_handler_failure_t *err) {
    const char *hello = "__NAME__.hello";
    bool known = msg->type.len == strlen(hello) && memcmp(msg->type.ptr, hello, msg->type.len) == 0;
    char *name = NULL;
    size_t name_len = 0;
    int found = known ? json_get_string((const char *)msg->data.ptr, msg->data.len, "name", &name, &name_len) : 0;
    exports_switchyard_plugin_handler_message_free(msg); // the message's strings are ours to free
    if (!known) return fail(err, "UNKNOWN_ACTION", "the only action is __NAME__.hello");
    if (found != 0) return fail(err, "INVALID_DATA", "expected {\"name\": \"...\"}");

    plugin_string_t key, value;
    plugin_string_set(&key, "count");
    long count = next_count(&key);
    char number[24];
    snprintf(number, sizeof number, "%ld", count);
    plugin_string_set(&value, number);
    switchyard_plugin_kv_failure_t kv_err;
    if (!switchyard_plugin_kv_set(&key, &value, &kv_err)) {
        free(name);
        *err = kv_err; // the host's failure, passed on as it is
        return false;
    }

    // "Hello, " name "!", byte for byte (a name may hold any character).
    size_t greeting_len = name_len + 8, quoted_len;
    char *greeting = malloc(greeting_len), *quoted;
    if (!greeting) abort();
    memcpy(greeting, "Hello, ", 7);
    memcpy(greeting + 7, name, name_len);
    greeting[greeting_len - 1] = '!';
    free(name);
    if (json_quote(greeting, greeting_len, &quoted, &quoted_len)) abort();
    free(greeting);
    size_t size = quoted_len + 48;
    char *reply = malloc(size);
    snprintf(reply, size, "{\"greeting\":%s,\"count\":%ld}", quoted, count);
    free(quoted);
    ret->ptr = (uint8_t *)reply;
    ret->len = strlen(reply);
    return true;
}
