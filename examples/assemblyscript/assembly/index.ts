// A WebAssembly function in AssemblyScript (with @assemblyscript/wasi-shim): reads a name from
// stdin (the request body), writes a greeting to stdout (the response body).
//
// Build:  npm install && npx asc assembly/index.ts --config ./node_modules/@assemblyscript/wasi-shim/asconfig.json -O3z --runtime stub -o hello.wasm
// or let the CLI build and deploy it (after npm install):
//         functions-host deploy examples/assemblyscript/assembly/index.ts --lang assemblyscript --name hello-as

const buffer = new ArrayBuffer(4096);
let length: i32 = 0;
while (length < buffer.byteLength) {
  const read = process.stdin.read(buffer, length);
  if (read <= 0) break;
  length += read;
}
let name = String.UTF8.decode(buffer.slice(0, length)).trim();
if (name.length == 0) name = "World";
process.stdout.write("Hello, " + name + "!\n");
