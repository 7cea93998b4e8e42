// A plain function: the JSON body of the request is the event, the return value the JSON response.
//   functions-host deploy examples/javascript/hello.js
//   functions-host invoke hello '{"name":"World"}'
export default async (event) => {
  console.log(`greeting ${event.name}`);
  return { message: `Hello, ${event.name}!` };
};
