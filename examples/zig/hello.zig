// A WebAssembly function in Zig (0.17): reads a name from stdin (the request body), writes a
// greeting to stdout (the response body).
//
// Build (pip install ziglang==0.17.1):  python3 -m ziglang build-exe hello.zig -target wasm32-wasi -O ReleaseSmall
// or let the CLI build and deploy it:  functions-host deploy examples/zig/hello.zig --name hello-zig
const std = @import("std");

pub fn main(init: std.process.Init) !void {
    const io = init.io;
    var in_buf: [4096]u8 = undefined;
    var out_buf: [4096]u8 = undefined;
    var in = std.Io.File.stdin().readerStreaming(io, &in_buf);
    var out = std.Io.File.stdout().writerStreaming(io, &out_buf);
    const line = (try in.interface.takeDelimiter('\n')) orelse "";
    const trimmed = std.mem.trim(u8, line, " \t\r\n");
    const name = if (trimmed.len == 0) "World" else trimmed;
    try out.interface.print("Hello, {s}!\n", .{name});
    try out.interface.flush();
}
