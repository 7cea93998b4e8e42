//! functions-runtime: the functions-host engine as a library.
//!
//! An [`Engine`] owns one worker thread per core. Each invocation of a JavaScript [`Function`]
//! runs in a new V8 isolate created from the base startup snapshot (`functions-snapshots`) and
//! destroyed afterwards, so nothing leaks between invocations; a function deployed with
//! [`Isolation::Function`] instead reuses warm isolates for its invocations. A worker runs the
//! event loops of all its isolates, entering each only while its JavaScript runs, so an
//! invocation that waits holds no thread; isolates of recently invoked functions are prepared
//! (module evaluated) before their invocations arrive.
//!
//! ```no_run
//! use functions_runtime::{Engine, EngineConfig, Function, Request};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(EngineConfig::default());
//! let hello = Function::javascript("hello", "export default (e) => ({ hi: e.name })");
//! engine.check(&hello).await?;
//! let outcome = engine.invoke(&hello, Request::json(r#"{"name":"World"}"#)).await;
//! let body = outcome.result?.body.bytes().await?; // whole, or a stream read to its end
//! assert_eq!(body, br#"{"hi":"World"}"#);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

#[cfg(feature = "js")]
mod allocator;
#[cfg(feature = "js")]
mod dotnet;
mod engine;
mod error;
mod function;
#[cfg(feature = "js")]
mod isolate;
#[cfg(feature = "js")]
mod loader;
mod module;
#[cfg(feature = "js")]
mod pool;
#[cfg(feature = "js")]
mod python;
#[cfg(feature = "js")]
mod services;
mod share;
#[cfg(feature = "wasm")]
mod wasm;
#[cfg(feature = "js")]
mod watchdog;
#[cfg(feature = "js")]
mod worker;

#[cfg(feature = "js")]
pub use dotnet::DISPATCHER_ASSEMBLY;
#[cfg(feature = "js")]
pub use dotnet::DISPATCHER_SOURCE;
#[cfg(feature = "js")]
pub use dotnet::DotnetBuild;
#[cfg(feature = "js")]
pub use dotnet::DotnetCode;
#[cfg(feature = "js")]
pub use dotnet::dispatcher_hash;
pub use engine::AfterResponse;
pub use engine::Cancel;
pub use engine::Controls;
pub use engine::Engine;
pub use engine::EngineConfig;
pub use engine::Finished;
pub use engine::Go;
pub use engine::Outcome;
pub use engine::StartGate;
pub use engine::Starting;
pub use engine::Timing;
pub use engine::Trace;
pub use engine::connect_directly;
pub use engine::default_max_isolates;
pub use engine::start_gate;
pub use error::CompileError;
pub use error::InvokeError;
pub use function::Executor;
pub use function::Function;
pub use function::Isolation;
pub use function::Limits;
pub use function::MAX_RESPONSE_BYTES;
pub use function::Settings;
#[cfg(feature = "js")]
pub use functions_ext::rpc::BoxedResponse;
#[cfg(feature = "js")]
pub use functions_ext::rpc::CAPNWEB_CALLER;
#[cfg(feature = "js")]
pub use functions_ext::rpc::CallChain;
#[cfg(feature = "js")]
pub use functions_ext::rpc::CapnwebClient;
#[cfg(feature = "js")]
pub use functions_ext::rpc::Hop;
#[cfg(feature = "js")]
pub use functions_ext::rpc::MAX_DEPTH as MAX_RPC_DEPTH;
#[cfg(feature = "js")]
pub use functions_ext::rpc::Protocol as RpcProtocol;
#[cfg(feature = "js")]
pub use functions_ext::rpc::RpcSession;
pub use functions_types::BodyError;
pub use functions_types::BodyStream;
pub use functions_types::HOST_ERROR_HEADER;
pub use functions_types::LogLevel;
pub use functions_types::LogLine;
pub use functions_types::Request;
pub use functions_types::Response;
pub use functions_types::ResponseBody;
pub use module::Module;
pub use module::ModuleKind;
pub use module::SourceLanguage;
#[cfg(feature = "js")]
pub use module::compile_files;
#[cfg(feature = "js")]
pub use python::MemorySnapshot;
#[cfg(feature = "js")]
pub use python::PyodideBuild;
#[cfg(feature = "js")]
pub use python::PythonCode;
#[cfg(feature = "js")]
pub use services::Serve;
#[cfg(feature = "js")]
pub use services::Services;
#[cfg(feature = "wasm")]
pub use wasm::WasmKind;
#[cfg(feature = "wasm")]
pub use wasm::WasmModule;
#[cfg(feature = "wasm")]
pub use wasm::WasmStats;
