// Package plugin writes Switchyard plugins in Go: components of the WIT world
// `plugin` of `switchyard:plugin@0.2.0`.
//
// A plugin registers its manifest and handler from an init function:
//
//	func init() {
//		plugin.Register(plugin.Manifest{Name: "echo", Version: "0.1.0", Claims: []string{"echo"}},
//			func(msg plugin.Message) (string, *plugin.Failure) { return msg.Data, nil })
//	}
//
//	func main() {} // never called in a reactor, but package main needs one
//
// There is no generated code: abi.go speaks the canonical ABI by hand.
// `switchyard plugin build` builds a project (GOOS=wasip1 GOARCH=wasm
// go build -buildmode=c-shared) and wraps the core module into a
// component (see README.md).
package plugin

import (
	"errors"
	"fmt"
)

// Manifest says what a plugin is and which message types it claims.
type Manifest struct {
	Name        string
	Version     string
	Description string
	// Claims are exact types (`get_time`) or prefix patterns (`video.*`).
	Claims []string
}

// Origin is where a message came from.
type Origin struct {
	ConnectionID string
	ClientID     string // "" when the client gave none (see HasClientID)
	HasClientID  bool
	Transport    string // `ws`, `http` or `worker`
	Endpoint     string // the endpoint path the connection came in on
}

// Message is one routed message.
type Message struct {
	ID   string
	Type string
	Data string // JSON text of the message's `data` (`null` when none)
	Meta string // JSON text of the message's `meta` object (`{}` when none)
	Origin
}

// Failure is what a client sees when a message fails: a stable machine code
// and a human message. It implements error.
type Failure struct {
	Code    string
	Message string
}

func (f *Failure) Error() string { return f.Code + ": " + f.Message }

// Fail builds a Failure with a formatted message.
func Fail(code, format string, args ...any) *Failure {
	return &Failure{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FailureOf is the failure err holds (what KV.Set and Publish return is
// the host's failure), else a failure with code and err's text; nil for nil.
func FailureOf(err error, code string) *Failure {
	if err == nil {
		return nil
	}
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return Fail(code, "%v", err)
}

// Handler handles one message: the reply's `data` as JSON text, or a failure.
type Handler func(msg Message) (string, *Failure)

var (
	manifest Manifest
	handler  Handler
)

// Register sets the plugin's manifest and handler. Call it from init.
func Register(m Manifest, h Handler) {
	manifest, handler = m, h
}
