// A WebAssembly function in C: reads a name from stdin (the request body), writes a greeting to
// stdout (the response body).
//
// Build (Debian: apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32):
//   clang-19 --target=wasm32-wasi --sysroot=/usr -fuse-ld=lld -Os -s -o hello.wasm hello.c
// or with zig (pip install ziglang):  python3 -m ziglang cc -target wasm32-wasi -Os -s -o hello.wasm hello.c
// Deploy and call:
//   functions-host deploy hello.wasm
//   curl -d World http://127.0.0.1:8787/fn/hello/
#include <stdio.h>
#include <string.h>

int main(void) {
  char name[256] = "";
  size_t n = fread(name, 1, sizeof name - 1, stdin);
  while (n > 0 && (name[n - 1] == '\n' || name[n - 1] == '\r' || name[n - 1] == ' ')) n--;
  name[n] = '\0';
  printf("Hello, %s!\n", n > 0 ? name : "World");
  return 0;
}
