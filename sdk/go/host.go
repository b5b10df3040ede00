package plugin

// The host capabilities the SDK binds: log, kv and events.publish.
// Results that do not fit one value come back through a return area, whose
// address is passed as the last argument; strings in it were allocated by
// the host through cabi_realloc, in the arena: copy them, then empty it.

import "unsafe"

// Level is a log level.
type Level uint32

const (
	Trace Level = iota
	Debug
	Info
	Warn
	Error
)

// The return area for imports: static, so it never moves while the host
// writes it (the host may call back into cabi_realloc first).
var importRet [5]uint32

func retArea() unsafe.Pointer {
	importRet = [5]uint32{}
	return unsafe.Pointer(&importRet)
}

//go:wasmimport switchyard:plugin/log@0.2.0 log
func hostLog(level uint32, msg string)

// Log writes msg into the host's log, tagged with the plugin's name.
func Log(level Level, msg string) { hostLog(uint32(level), msg) }

//go:wasmimport switchyard:plugin/kv@0.2.0 get
func hostKVGet(key string, ret unsafe.Pointer)

//go:wasmimport switchyard:plugin/kv@0.2.0 set
func hostKVSet(key, value string, ret unsafe.Pointer)

//go:wasmimport switchyard:plugin/kv@0.2.0 delete
func hostKVDelete(key string)

//go:wasmimport switchyard:plugin/kv@0.2.0 keys
func hostKVKeys(prefix string, ret unsafe.Pointer)

//go:wasmimport switchyard:plugin/events@0.2.0 publish
func hostPublish(topic, json string, ret unsafe.Pointer)

// KV is the key-value store scoped to the plugin's name; it survives hot swaps.
var KV kv

type kv struct{}

// Get returns the value of key, and whether it was set.
func (kv) Get(key string) (string, bool) {
	hostKVGet(key, retArea())
	defer ensureArena()
	if importRet[0]&0xff == 0 {
		return "", false
	}
	return loadString(addr(unsafe.Pointer(&importRet[1]))), true
}

// Set sets key to value; it fails with KV_QUOTA_EXCEEDED over the plugin's limits.
func (kv) Set(key, value string) error {
	hostKVSet(key, value, retArea())
	return resultFailure()
}

// Delete removes key.
func (kv) Delete(key string) { hostKVDelete(key) }

// Keys returns the keys starting with prefix, sorted.
func (kv) Keys(prefix string) []string {
	hostKVKeys(prefix, retArea())
	defer ensureArena()
	list, n := importRet[0], importRet[1]
	keys := make([]string, n)
	for i := range keys {
		keys[i] = loadString(list + 8*uint32(i))
	}
	return keys
}

// Publish sends json (the event's data) to every connection subscribed to topic.
func Publish(topic, json string) error {
	hostPublish(topic, json, retArea())
	return resultFailure()
}

// resultFailure reads a result<_, failure> from the import return area.
func resultFailure() error {
	defer ensureArena()
	if importRet[0]&0xff == 0 {
		return nil
	}
	a := addr(unsafe.Pointer(&importRet))
	return &Failure{Code: loadString(a + 4), Message: loadString(a + 12)}
}
