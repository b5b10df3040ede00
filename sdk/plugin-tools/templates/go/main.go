// `__NAME__`: a Switchyard plugin.
//
// `__NAME__.hello` {"name": "Ada"} -> {"greeting": "Hello, Ada!", "count": 1},
// where `count` is kept in the host's key-value store across swaps.
// Returning a *plugin.Failure answers the client with its code; a panic
// becomes the failure PLUGIN_PANIC.
package main

import (
	"encoding/json"
	"strconv"

	"switchyard.dev/plugin"
)

func init() {
	plugin.Register(plugin.Manifest{Name: "__NAME__", Version: "0.1.0", Claims: []string{"__NAME__.*"}}, handle)
}

// main is never called: the module is a reactor, and init registers the plugin.
func main() {}

func handle(msg plugin.Message) (string, *plugin.Failure) {
	if msg.Type != "__NAME__.hello" {
		return "", plugin.Fail("UNKNOWN_ACTION", "no action %q", msg.Type)
	}
	var in struct {
		Name *string `json:"name"`
	}
	if err := json.Unmarshal([]byte(msg.Data), &in); err != nil || in.Name == nil {
		return "", plugin.Fail("INVALID_DATA", `expected {"name": "..."}`)
	}
	count := 1
	if v, ok := plugin.KV.Get("count"); ok {
		n, _ := strconv.Atoi(v)
		count = n + 1
	}
	if err := plugin.KV.Set("count", strconv.Itoa(count)); err != nil {
		return "", plugin.FailureOf(err, "KV_FAILED") // the host's failure, passed on
	}
	reply, _ := json.Marshal(map[string]any{"greeting": "Hello, " + *in.Name + "!", "count": count})
	return string(reply), nil
}
