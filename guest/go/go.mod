module functions-host.dev/guest

go 1.21
