//! C# functions: their assemblies and the .NET WebAssembly runtime they run on.
//!
//! A C# function runs in a V8 isolate like a JavaScript one (same limits, logs, dispatcher);
//! instead of a module graph, the isolate loads the runtime's three JavaScript modules and
//! boots it with `ext/dotnet/boot.js`, which binds the function's entry through the
//! dispatcher assembly deployed with it (`ext/dotnet/Dispatcher.cs`).

use std::collections::BTreeMap;
use std::sync::Arc;

pub use functions_ext::dotnet::DISPATCHER_ASSEMBLY;
pub use functions_ext::dotnet::DISPATCHER_SOURCE;
use functions_ext::dotnet::DotnetBoot;
pub use functions_ext::dotnet::DotnetBuild;
pub use functions_ext::dotnet::dispatcher_hash;
use functions_ext::snapshot::MemorySnapshot;

/// A C# function's code: its assemblies and the method to call.
#[derive(Clone, Debug)]
pub struct DotnetCode {
    /// The runtime build it runs on.
    pub build: Arc<DotnetBuild>,
    /// Its assemblies (file name → bytes): its own and the dispatcher's
    /// ([`DISPATCHER_ASSEMBLY`]`.dll`).
    pub assemblies: Arc<BTreeMap<String, Vec<u8>>>,
    /// The name of the assembly that holds the entry; empty in a baseline ([`Self::baseline`]).
    pub assembly: String,
    /// The method to call (`Class.Method`); `None` calls the assembly's only public static
    /// method.
    pub entry: Option<String>,
    /// The memory image each invocation restores ([`crate::Engine::snapshot_dotnet`]); `None`
    /// boots the runtime from scratch (about a second). A baseline's restores the runtime and
    /// the dispatcher, and then loads the function's assemblies and binds its entry: how the
    /// function's own snapshot is made quickly.
    pub snapshot: Option<Arc<MemorySnapshot>>,
}

impl DotnetCode {
    /// The runtime with `dispatcher` (the compiled [`DISPATCHER_SOURCE`]) alone: what a
    /// baseline snapshot holds, which functions' own snapshots are made from.
    pub fn baseline(build: Arc<DotnetBuild>, dispatcher: Vec<u8>) -> Self {
        let file = format!("{DISPATCHER_ASSEMBLY}.dll");
        Self {
            build,
            assemblies: Arc::new(BTreeMap::from([(file, dispatcher)])),
            assembly: String::new(),
            entry: None,
            snapshot: None,
        }
    }

    /// What the isolate boots.
    pub(crate) fn boot(&self, env: &BTreeMap<String, String>, make_snapshot: bool) -> DotnetBoot {
        DotnetBoot {
            build: self.build.clone(),
            assemblies: self.assemblies.clone(),
            assembly: self.assembly.clone(),
            entry: self.entry.clone(),
            env: env.clone(),
            snapshot: self.snapshot.clone(),
            make_snapshot,
        }
    }
}
