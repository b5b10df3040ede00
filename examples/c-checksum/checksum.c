// `c-checksum`: answers `checksum` with the CRC-32 (IEEE) of `data.text`:
// {"text": "hello"} -> {"crc32": 907060870, "hex": "3610a686", "bytes": 5}
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "plugin.h" // written into build/ by `switchyard plugin build`

static uint32_t crc32_ieee(const uint8_t *p, size_t n) {
    uint32_t crc = 0xFFFFFFFFu;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & -(crc & 1));
    }
    return ~crc;
}

// Every string handed back to the host is malloc'd: the generated
// post-return functions free them once the host has copied them.
static bool fail(exports_switchyard_plugin_handler_failure_t *err, const char *code, const char *message) {
    plugin_string_dup(&err->code, code);
    plugin_string_dup(&err->message, message);
    return false;
}

void exports_switchyard_plugin_handler_manifest(exports_switchyard_plugin_handler_plugin_manifest_t *ret) {
    plugin_string_dup(&ret->name, "c-checksum");
    plugin_string_dup(&ret->version, "0.1.0");
    plugin_string_dup(&ret->description, "CRC-32 of a text (C)");
    ret->claims.len = 1;
    ret->claims.ptr = malloc(sizeof(plugin_string_t));
    plugin_string_dup(&ret->claims.ptr[0], "checksum");
    ret->tick_interval_ms.is_some = false; // no lifecycle ticks
}

bool exports_switchyard_plugin_handler_handle(exports_switchyard_plugin_handler_message_t *msg, plugin_string_t *ret,
                                              exports_switchyard_plugin_handler_failure_t *err) {
    char *text = NULL;
    size_t len = 0;
    int found = json_get_string((const char *)msg->data.ptr, msg->data.len, "text", &text, &len);
    exports_switchyard_plugin_handler_message_free(msg); // the message's strings are ours to free
    if (found == -1) return fail(err, "INVALID_DATA", "data must be a JSON object");
    if (found == -2) return fail(err, "INVALID_DATA", "data.text is missing");
    if (found == -3) return fail(err, "INVALID_DATA", "data.text must be a string");

    uint32_t crc = crc32_ieee((const uint8_t *)text, len);
    free(text);

    char reply[80];
    snprintf(reply, sizeof reply, "{\"crc32\":%u,\"hex\":\"%08x\",\"bytes\":%zu}", crc, crc, len);
    plugin_string_dup(ret, reply);

    plugin_string_t line;
    plugin_string_set(&line, reply);
    switchyard_plugin_log_log(SWITCHYARD_PLUGIN_LOG_LEVEL_DEBUG, &line);
    return true;
}
