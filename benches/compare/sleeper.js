export default { async fetch() { await new Promise((r) => setTimeout(r, 1000)); return new Response("ok"); } };
