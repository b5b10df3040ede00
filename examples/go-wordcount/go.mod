module switchyard.dev/examples/go-wordcount

go 1.24

require switchyard.dev/plugin v0.0.0

replace switchyard.dev/plugin => ../../sdk/go
