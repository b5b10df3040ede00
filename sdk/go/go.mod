module switchyard.dev/plugin

go 1.24
