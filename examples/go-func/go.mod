module hello

go 1.21

require functions-host.dev/guest v0.0.0

replace functions-host.dev/guest => ../../guest/go
