using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "hello", worker = .hello), (name = "sleeper", worker = .sleeper) ],
  sockets = [
    ( name = "hello", address = "127.0.0.1:9102", http = (), service = "hello" ),
    ( name = "sleeper", address = "127.0.0.1:9104", http = (), service = "sleeper" ),
  ]
);
const hello :Workerd.Worker = (
  modules = [ (name = "worker", esModule = embed "hello.js") ],
  compatibilityDate = "2024-09-01",
);
const sleeper :Workerd.Worker = (
  modules = [ (name = "worker", esModule = embed "sleeper.js") ],
  compatibilityDate = "2024-09-01",
);
