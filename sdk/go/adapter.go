package plugin

// Memory for the WASI adapter.
//
// A Go wasip1 module imports WASI preview 1; to become a component it is
// wrapped with the WASI preview 1 reactor adapter, which imports the module's
// memory and needs two pages of its own (its state and its stack), first
// during _initialize. It cannot get them from Go (no Go export may run before
// _initialize), and not by growing the memory either: Go's heap believes it
// owns every byte past its data and would overwrite them.
//
// So they live here, in Go's data. The array starts with a marker; the
// componentize step finds the marker in the module's data segments and adds
// `cabi_realloc_adapter`, a bump allocator over the bytes after it, which the
// adapter then uses. Go never touches the array (it holds no pointers).

// adapterMemory: the 32-byte marker "switchyard:go-adapter-memory:v1\0"
// (spelled out only here, so that it occurs once in the module), then 192 KiB.
var adapterMemory = [32 + 3<<16]byte{
	's', 'w', 'i', 't', 'c', 'h', 'y', 'a', 'r', 'd', ':', 'g', 'o', '-', 'a', 'd',
	'a', 'p', 't', 'e', 'r', '-', 'm', 'e', 'm', 'o', 'r', 'y', ':', 'v', '1', 0,
}

func init() {
	// Also keeps the array from being dropped by the linker.
	if adapterMemory[0] != 's' {
		panic("switchyard: the WASI adapter's memory was overwritten")
	}
}
