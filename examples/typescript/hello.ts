// A plain function in TypeScript: run it locally with
//   functions-host run examples/typescript/hello.ts '{"name":"TypeScript"}'
interface Event {
  name?: string;
}

export default (event: Event): { message: string } => ({
  message: `Hello, ${event.name ?? "World"}!`,
});
