package plugin

// The canonical ABI of the world's exports, written by hand.
//
// Two rules keep Go's runtime and the host apart:
//
//   - cabi_realloc must not call Go's allocator. The host calls it while
//     lowering arguments and import results, when the component may not call
//     out; but a Go allocation may call out (mheap.allocSpan reads the clock,
//     a WASI import), which traps ("cannot leave component instance"). So
//     cabi_realloc bumps through an arena allocated beforehand, and its bytes
//     are copied into Go strings as soon as Go code runs again.
//   - Go's garbage collector frees what nothing in Go references, and an
//     export's result (reply strings, the claims list) is referenced only
//     from linear memory. It stays in `keep` until the export's post-return
//     hook, which the host calls once it has copied the result.

import "unsafe"

// ArenaSize is how many bytes are kept ready for the host's allocations: one
// message's arguments, or one import's results. A larger request is served
// by Go's allocator, which may trap; the arena then grows for next time.
var ArenaSize = 2 << 20

var (
	arena    []uint64 // []uint64: 8-byte aligned
	arenaOff uint32
	keep     []any
)

func init() { ensureArena() }

// ensureArena (re)allocates the arena when it is smaller than ArenaSize, and
// empties it. Only call it when nothing in the arena is still needed.
func ensureArena() {
	if len(arena)*8 < ArenaSize {
		arena = make([]uint64, (ArenaSize+7)/8)
	}
	arenaOff = 0
}

// release drops what the last call kept alive.
func release() {
	clear(keep)
	keep = keep[:0]
}

//go:wasmexport cabi_realloc
func cabiRealloc(oldPtr, oldLen, align, newLen uint32) uint32 {
	if newLen == 0 {
		return align // a non-null, aligned, empty allocation
	}
	base := addr(unsafe.Pointer(&arena[0]))
	off := (base+arenaOff+align-1)&^(align-1) - base
	var p uint32
	if uint64(off)+uint64(newLen) <= uint64(len(arena))*8 {
		p, arenaOff = base+off, off+newLen
	} else {
		// Too big for the arena: Go's allocator, and a bigger arena next time.
		buf := make([]uint64, (newLen+align+7)/8)
		keep = append(keep, buf)
		p = (addr(unsafe.Pointer(&buf[0])) + align - 1) &^ (align - 1)
		ArenaSize = max(ArenaSize, int(2*newLen))
	}
	if oldPtr != 0 {
		copy(bytesAt(p, min(oldLen, newLen)), bytesAt(oldPtr, min(oldLen, newLen)))
	}
	return p
}

// manifest: func() -> plugin-manifest. Returns a pointer to the record:
// name, version, description (ptr, len each), claims (ptr, len of a list of
// strings), tick-interval-ms (option<u32>: tag byte at 32, value at 36).
var manifestRet [10]uint32

//go:wasmexport switchyard:plugin/handler@0.2.0#manifest
func exportManifest() uint32 {
	putString(manifestRet[0:], manifest.Name)
	putString(manifestRet[2:], manifest.Version)
	putString(manifestRet[4:], manifest.Description)
	claims := make([]uint32, 2*len(manifest.Claims)+1) // +1: never empty
	for i, c := range manifest.Claims {
		putString(claims[2*i:], c)
	}
	keep = append(keep, claims)
	manifestRet[6] = addr(unsafe.Pointer(&claims[0]))
	manifestRet[7] = uint32(len(manifest.Claims))
	manifestRet[8], manifestRet[9] = 0, 0 // tick-interval-ms: none (no lifecycle export)
	return addr(unsafe.Pointer(&manifestRet))
}

//go:wasmexport cabi_post_switchyard:plugin/handler@0.2.0#manifest
func postManifest(uint32) { release() }

// handle: func(msg: message) -> result<string, failure>. The message record
// flattens to 17 values, more than 16, so it arrives by pointer (68 bytes):
// id 0, type 8, data 16, meta 24, then origin: connection-id 32,
// client-id 40 (tag byte, string at 44), transport 52, endpoint 60.
// The result is a pointer to: tag byte at 0 (0 ok, 1 err), then the reply
// string at 4, or the failure's code at 4 and message at 12.
var handleRet [5]uint32

//go:wasmexport switchyard:plugin/handler@0.2.0#handle
func exportHandle(msg uint32) uint32 {
	m := Message{
		ID:   loadString(msg),
		Type: loadString(msg + 8),
		Data: loadString(msg + 16),
		Meta: loadString(msg + 24),
		Origin: Origin{
			ConnectionID: loadString(msg + 32),
			HasClientID:  *(*uint8)(ptr(msg + 40)) != 0,
			Transport:    loadString(msg + 52),
			Endpoint:     loadString(msg + 60),
		},
	}
	if m.HasClientID {
		m.ClientID = loadString(msg + 44)
	}
	ensureArena() // the arguments are copied: the arena is free again
	reply, fail := call(m)
	if fail == nil {
		handleRet[0] = 0
		putString(handleRet[1:], reply)
	} else {
		handleRet[0] = 1
		putString(handleRet[1:], fail.Code)
		putString(handleRet[3:], fail.Message)
	}
	return addr(unsafe.Pointer(&handleRet))
}

//go:wasmexport cabi_post_switchyard:plugin/handler@0.2.0#handle
func postHandle(uint32) { release() }

// call runs the handler, turning a panic into the failure PLUGIN_PANIC.
func call(m Message) (reply string, fail *Failure) {
	defer func() {
		if r := recover(); r != nil {
			fail = Fail("PLUGIN_PANIC", "%v", r)
		}
	}()
	if handler == nil {
		return "", &Failure{"NO_HANDLER", "the plugin did not call plugin.Register"}
	}
	return handler(m)
}

// Linear-memory helpers. Addresses are 32-bit; Go's pointers on wasm are
// 64-bit values that always fit. (go vet flags ptr as a possible misuse of
// unsafe.Pointer: here an integer is a linear-memory address, by design.)

func ptr(a uint32) unsafe.Pointer  { return unsafe.Pointer(uintptr(a)) }
func addr(p unsafe.Pointer) uint32 { return uint32(uintptr(p)) }
func load32(a uint32) uint32       { return *(*uint32)(ptr(a)) }
func bytesAt(a, n uint32) []byte   { return unsafe.Slice((*byte)(ptr(a)), n) }

// loadString copies the (ptr, len) string at a out of linear memory.
func loadString(a uint32) string {
	return string(bytesAt(load32(a), load32(a+4)))
}

// putString stores s as (ptr, len) in dst[0:2] and keeps s alive.
func putString(dst []uint32, s string) {
	keep = append(keep, s)
	dst[0], dst[1] = addr(unsafe.Pointer(unsafe.StringData(s))), uint32(len(s))
}
