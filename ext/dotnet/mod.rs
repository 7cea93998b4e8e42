//! `dotnet`: C# functions on the .NET WebAssembly runtime, booted in a function isolate by
//! `boot.js`.
//!
//! The runtime puts a [`DotnetBoot`] in the isolate's `OpState`, loads the runtime's three
//! JavaScript modules (its loader `dotnet.js`, Emscripten's `dotnet.native.js` and
//! `dotnet.runtime.js`, which the function's module loader serves at [`LOADER_SPECIFIER`],
//! [`NATIVE_SPECIFIER`] and [`RUNTIME_SPECIFIER`]) and calls `startDotnet` (left on the host's
//! internals) with them. Through the ops here `boot.js` gets every file as bytes, never from a
//! file system or the network: `dotnet.native.wasm`, compiled once per process and shared by
//! every isolate ([`DotnetBuild`]), the framework's assemblies and ICU's data, and the
//! function's own assemblies.

use std::collections::BTreeMap;
use std::sync::Arc;

use deno_core::OpState;
use deno_core::op2;
use deno_core::v8;
use serde::Serialize;

use crate::shared_module::SharedModule;

pub use crate::snapshot::MadeSnapshot;
pub use crate::snapshot::MemorySnapshot;

/// Where a C# function's isolate finds the runtime's loader.
pub const LOADER_SPECIFIER: &str = "file:///dotnet/dotnet.js";
/// Where it finds Emscripten's module of the runtime.
pub const NATIVE_SPECIFIER: &str = "file:///dotnet/dotnet.native.js";
/// Where it finds the runtime's JavaScript.
pub const RUNTIME_SPECIFIER: &str = "file:///dotnet/dotnet.runtime.js";

/// The name of the dispatcher's assembly, which every C# function is deployed with (the CLI
/// compiles `Dispatcher.cs` beside the function's own code).
pub const DISPATCHER_ASSEMBLY: &str = "FunctionsHost.Dispatcher";

/// The dispatcher's source, as the CLI compiles it.
pub const DISPATCHER_SOURCE: &str = include_str!("Dispatcher.cs");

/// A hash of [`DISPATCHER_SOURCE`]: what a compiled dispatcher is kept under.
pub fn dispatcher_hash() -> u64 {
    crate::snapshot::fnv1a(&[DISPATCHER_SOURCE])
}

/// What a file of the runtime is to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AssetKind {
    /// Loaded before the others (`System.Private.CoreLib`, interop).
    CoreAssembly,
    /// Any other assembly.
    Assembly,
    /// ICU's data.
    Icu,
}

/// One file the runtime loads.
pub struct Asset {
    /// The name the runtime knows it by (`System.Linq.wasm`, `icudt_EFIGS.dat`).
    pub virtual_path: String,
    /// What it is to the runtime.
    pub kind: AssetKind,
    /// Its contents.
    pub bytes: Vec<u8>,
}

/// One build of the runtime in memory: what every C# isolate of the process shares.
pub struct DotnetBuild {
    build_id: String,
    loader: Arc<str>,
    native: Arc<str>,
    runtime: Arc<str>,
    wasm: SharedModule,
    assets: Vec<Asset>,
}

impl std::fmt::Debug for DotnetBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DotnetBuild")
            .field("build_id", &self.build_id)
            .field("assets", &self.assets.len())
            .finish_non_exhaustive()
    }
}

impl DotnetBuild {
    /// A build from its files: the three JavaScript modules, `dotnet.native.wasm` and the
    /// assets. `build_id` tells snapshots of this build from those of any other.
    pub fn new(
        build_id: &str,
        loader: String,
        native: String,
        runtime: String,
        wasm: Vec<u8>,
        assets: Vec<Asset>,
    ) -> Result<Self, String> {
        if !loader.contains("withModuleConfig") {
            return Err("dotnet.js is not the runtime's loader".into());
        }
        Ok(Self {
            build_id: build_id.to_owned(),
            loader: loader.into(),
            native: native.into(),
            runtime: runtime.into(),
            wasm: SharedModule::new("dotnet.native.wasm", wasm)?,
            assets,
        })
    }

    /// The build of the runtime in `runtime`, every file read (and checked, as the runtime
    /// checked them when it was opened).
    pub fn read(runtime: &functions_dotnet::Runtime) -> Result<Self, String> {
        let read = |file: &str| {
            runtime
                .read(file)
                .map_err(|err| format!("reading {file} of the .NET runtime: {err}"))
        };
        let text =
            |file: &str| String::from_utf8(read(file)?).map_err(|_| format!("{file} is not UTF-8"));
        let layout = runtime.layout();
        let mut assets = Vec::new();
        for (list, kind) in [
            (&layout.core_assemblies, AssetKind::CoreAssembly),
            (&layout.assemblies, AssetKind::Assembly),
            (&layout.icu, AssetKind::Icu),
        ] {
            for asset in list {
                assets.push(Asset {
                    virtual_path: asset.virtual_path.clone(),
                    kind,
                    bytes: read(&asset.file)?,
                });
            }
        }
        Self::new(
            functions_dotnet::build_id(),
            text(functions_dotnet::LOADER)?,
            text(&layout.native_js)?,
            text(&layout.runtime_js)?,
            read(&layout.wasm)?,
            assets,
        )
    }

    /// The id snapshots of this build carry.
    pub fn build_id(&self) -> &str {
        &self.build_id
    }

    /// What the snapshots this build (with this host) makes carry, and what a snapshot must
    /// carry to be restored by it: the build id and the host's part of the runtime.
    pub fn snapshot_tag(&self) -> String {
        let host = crate::snapshot::fnv1a(&[DISPATCHER_SOURCE, include_str!("boot.js")]);
        format!("{}-{host:016x}", self.build_id)
    }

    /// The source of the runtime's module at `specifier`, if it is one of the three.
    pub fn module_source(&self, specifier: &str) -> Option<&Arc<str>> {
        match specifier {
            LOADER_SPECIFIER => Some(&self.loader),
            NATIVE_SPECIFIER => Some(&self.native),
            RUNTIME_SPECIFIER => Some(&self.runtime),
            _ => None,
        }
    }
}

/// What a C# function's isolate boots, put in its `OpState` by the runtime.
pub struct DotnetBoot {
    /// The runtime build.
    pub build: Arc<DotnetBuild>,
    /// The function's assemblies (file name → bytes): its own and the dispatcher's.
    pub assemblies: Arc<BTreeMap<String, Vec<u8>>>,
    /// The name of the assembly that holds the entry (its file's, without `.dll`); empty for a
    /// baseline (the runtime and the dispatcher alone).
    pub assembly: String,
    /// The method to call (`Class.Method`), when the function names one (otherwise the
    /// assembly's only public static method).
    pub entry: Option<String>,
    /// The function's environment variables.
    pub env: BTreeMap<String, String>,
    /// The memory image to restore instead of booting.
    pub snapshot: Option<Arc<MemorySnapshot>>,
    /// Make a snapshot once booted (and the entry bound), instead of serving invocations.
    pub make_snapshot: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BootConfig {
    /// Every asset, by index: the runtime's, then the function's assemblies.
    assets: Vec<(String, AssetKind)>,
    /// The indexes of the function's assemblies but the dispatcher's.
    own_assemblies: Vec<usize>,
    /// The assembly of the entry; empty in a baseline (the runtime and the dispatcher alone).
    assembly: String,
    dispatcher: &'static str,
    entry: Option<String>,
    env: BTreeMap<String, String>,
    /// The references of the snapshot to restore, if any (`JSON.parse`d by `boot.js`).
    restore: Option<String>,
    /// The memory size the snapshot restores.
    memory_bytes: f64,
    make_snapshot: bool,
}

#[op2]
#[serde]
fn op_dotnet_boot(state: &mut OpState) -> BootConfig {
    let boot = state.borrow::<DotnetBoot>();
    let runtime = (boot.build.assets.iter()).map(|asset| (asset.virtual_path.clone(), asset.kind));
    let own = (boot.assemblies.keys()).map(|name| (name.clone(), AssetKind::Assembly));
    let dispatcher = format!("{DISPATCHER_ASSEMBLY}.dll");
    let own_assemblies = (boot.assemblies.keys().enumerate())
        .filter(|(_, name)| **name != dispatcher)
        .map(|(index, _)| boot.build.assets.len() + index)
        .collect();
    let snapshot = boot.snapshot.as_ref();
    BootConfig {
        assets: runtime.chain(own).collect(),
        own_assemblies,
        assembly: boot.assembly.clone(),
        dispatcher: DISPATCHER_ASSEMBLY,
        entry: boot.entry.clone(),
        env: boot.env.clone(),
        restore: snapshot.map(|s| s.references().to_owned()),
        memory_bytes: snapshot.map_or(0.0, |s| s.memory_bytes as f64),
        make_snapshot: boot.make_snapshot,
    }
}

/// Copies the snapshot's memory into the runtime's (grown to its size first).
#[op2(fast)]
fn op_dotnet_restore(state: &mut OpState, #[buffer] memory: &mut [u8]) -> bool {
    let boot = state.borrow::<DotnetBoot>();
    match &boot.snapshot {
        Some(snapshot) if memory.len() as u64 >= snapshot.memory_bytes => {
            snapshot.restore_into(memory);
            true
        }
        _ => false,
    }
}

/// Takes the runtime's memory as the snapshot `boot.js` made, with its `references`.
#[op2(fast)]
fn op_dotnet_snapshot_made(
    state: &mut OpState,
    #[buffer] memory: &[u8],
    #[string] references: &str,
) {
    let tag = state.borrow::<DotnetBoot>().build.snapshot_tag();
    let made = MemorySnapshot::new(tag, references.to_owned(), memory);
    state.put(MadeSnapshot(Ok(made)));
}

/// A copy of asset `index` of [`op_dotnet_boot`]'s list (the runtime owns it).
#[op2]
#[buffer]
fn op_dotnet_asset(state: &mut OpState, #[smi] index: usize) -> Vec<u8> {
    let boot = state.borrow::<DotnetBoot>();
    let runtime = boot.build.assets.len();
    match index.checked_sub(runtime) {
        None => boot.build.assets[index].bytes.clone(),
        Some(own) => boot
            .assemblies
            .values()
            .nth(own)
            .cloned()
            .unwrap_or_default(),
    }
}

/// `dotnet.native.wasm`'s module object, made from the process's one compiled module (compiled
/// by the first isolate that asks).
#[op2]
fn op_dotnet_wasm_module<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    state: &mut OpState,
) -> v8::Local<'s, v8::Value> {
    let build = state.borrow::<DotnetBoot>().build.clone();
    build.wasm.object(scope)
}

deno_core::extension!(
  dotnet,
  deps = [host],
  ops = [
    op_dotnet_boot,
    op_dotnet_asset,
    op_dotnet_wasm_module,
    op_dotnet_restore,
    op_dotnet_snapshot_made,
  ],
  esm_entry_point = "ext:dotnet/boot.js",
  esm = [dir "dotnet", "boot.js"],
);
