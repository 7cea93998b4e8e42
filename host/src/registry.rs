//! The current version of every deployed function, in memory, ready to invoke.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;

use functions_runtime::DotnetCode;
use functions_runtime::Engine;
use functions_runtime::Function;
use functions_runtime::MemorySnapshot;
use functions_runtime::PythonCode;
use functions_runtime::Settings;
use functions_runtime::WasmModule;

use crate::Language;
use crate::dotnet::Dotnet;
use crate::python::Python;
use crate::store::Deployment;
use crate::store::Store;

/// Maps names to their current [`Deployed`] function. Invocations clone the one they start with,
/// so a redeploy never disturbs invocations in flight.
#[derive(Default)]
pub(crate) struct Registry {
    functions: RwLock<HashMap<String, Deployed>>,
}

/// A deployed function as the host runs it: the engine's [`Function`] and the host's rules.
#[derive(Clone)]
pub(crate) struct Deployed {
    pub function: Function,
    /// How many of its invocations may run at once.
    pub concurrency: usize,
    /// Whether `/fn/{name}` answers without an API key.
    pub public: bool,
    /// The secret of its key-less address `/call/{name}/{token}`.
    pub call_token: Arc<str>,
    /// The tenant that first deployed it, if one did.
    pub owner: Option<Arc<str>>,
    /// When the function was first deployed (Unix milliseconds): with its version, which
    /// deployment this is, even across a delete and a new first deploy under the name.
    pub created_at: i64,
    /// The language it was deployed in.
    pub language: crate::Language,
}

impl Deployed {
    /// Which deployment of its name this is: later ones compare greater.
    pub fn generation(&self) -> (i64, u64) {
        (self.created_at, self.function.version())
    }
}

/// How a stored deployment runs.
pub(crate) fn settings_of(deployment: &Deployment) -> Settings {
    Settings {
        env: deployment.env.clone(),
        isolation: deployment.summary.isolation,
        allow_net: deployment.allow_net.clone(),
        // Deployed functions have no `location`, as in Workers and Deno Deploy.
        location: None,
        limits: deployment.summary.limits.runtime(),
        executor: deployment.executor,
        // A key's functions share one fair share of the engine.
        share_group: deployment.summary.owner.as_deref().map(Into::into),
        bindings: deployment.bindings.clone(),
    }
}

/// What a deployment runs, besides its modules: compiled WebAssembly, or Python or C# code.
pub(crate) enum Code {
    /// Its JavaScript modules, as stored.
    Modules,
    /// A WebAssembly function's compiled module.
    Wasm(WasmModule),
    /// A Python function's code, its snapshot read.
    Python(PythonCode),
    /// A C# function's code, its snapshot read.
    Dotnet(DotnetCode),
}

/// The runnable form of a stored deployment. JavaScript modules are compiled already; a
/// WebAssembly function's stored artifact is loaded (compiled again only if `engine` cannot
/// load it); a Python or C# function's snapshot is read (made again if its runtime or the host
/// changed since it was made, and then written back to `store`).
pub(crate) async fn function_of(
    deployment: &Deployment,
    engine: &Engine,
    (python, dotnet): (&Python, &Dotnet),
    store: &dyn Store,
) -> Result<Deployed, String> {
    let stored = deployment.runtime_code.as_ref();
    let code = if let Some(wasm) = &deployment.wasm {
        Code::Wasm(
            engine
                .load_wasm(wasm.binary.clone(), &wasm.artifact)
                .map_err(|err| err.to_string())?,
        )
    } else if let Some(stored) = stored
        && deployment.summary.language == Language::CSharp
    {
        let ready = dotnet.ready().await.map_err(|err| err.to_string())?;
        let entry = &deployment.summary.entry;
        let snapshot = MemorySnapshot::from_bytes(&stored.snapshot)
            .ok()
            .filter(|snapshot| snapshot.tag() == ready.build.snapshot_tag());
        let snapshot = match snapshot {
            Some(snapshot) => snapshot,
            None => {
                // Made by another runtime or host: made again, from this one's baseline.
                let code = crate::dotnet::code(&ready.build, entry, stored, None)?;
                let function = function_with(deployment, Code::Dotnet(code));
                let snapshot = dotnet.snapshot(engine, &ready, &function).await;
                kept(store, deployment, snapshot.map_err(|err| err.to_string())?).await
            }
        };
        Code::Dotnet(crate::dotnet::code(
            &ready.build,
            entry,
            stored,
            Some(Arc::new(snapshot)),
        )?)
    } else if let Some(stored) = stored {
        let ready = python.ready(engine).await.map_err(|err| err.to_string())?;
        let snapshot = MemorySnapshot::from_bytes(&stored.snapshot)
            .ok()
            .filter(|snapshot| snapshot.fits(&ready.build));
        let code =
            |snapshot| crate::python::code(&ready, &deployment.summary.entry, stored, snapshot);
        let snapshot = match snapshot {
            Some(snapshot) => snapshot,
            None => {
                // Made by another Pyodide or host: made again, from this one's baseline.
                let first = code(ready.baseline.clone())?;
                let function = function_with(deployment, Code::Python(first));
                let snapshot = engine.snapshot_python(&function).await;
                kept(store, deployment, snapshot.map_err(|err| err.to_string())?).await
            }
        };
        Code::Python(code(Arc::new(snapshot))?)
    } else {
        Code::Modules
    };
    Ok(deployed_with(deployment, code))
}

/// `snapshot`, made again for `deployment`, after storing it so that the next start restores
/// it as it is.
async fn kept(
    store: &dyn Store,
    deployment: &Deployment,
    snapshot: MemorySnapshot,
) -> MemorySnapshot {
    let stored = store
        .replace_snapshot(
            deployment.name(),
            deployment.version(),
            snapshot.to_bytes().into(),
        )
        .await;
    if let Err(err) = stored {
        eprintln!(
            "functions-host: the new snapshot of {} could not be stored: {err:#}",
            deployment.name()
        );
    }
    snapshot
}

/// `deployment` as the server runs it, running `code`.
pub(crate) fn deployed_with(deployment: &Deployment, code: Code) -> Deployed {
    Deployed {
        function: function_with(deployment, code),
        concurrency: deployment.summary.limits.concurrency(),
        public: deployment.summary.public,
        call_token: deployment.summary.call_token.as_str().into(),
        owner: deployment.summary.owner.as_deref().map(Into::into),
        created_at: deployment.summary.created_at,
        language: deployment.summary.language,
    }
}

/// `deployment` as a [`Function`] running `code`.
pub(crate) fn function_with(deployment: &Deployment, code: Code) -> Function {
    let settings = settings_of(deployment);
    let (name, version) = (deployment.name(), deployment.version());
    match code {
        Code::Wasm(module) => Function::wasm(name, version, module, settings),
        Code::Python(code) => Function::python(name, version, code, settings),
        Code::Dotnet(code) => Function::dotnet(name, version, code, settings),
        Code::Modules => Function::new(
            name,
            version,
            &deployment.summary.entry,
            deployment.modules.clone(),
            settings,
        ),
    }
}

impl Registry {
    /// Makes `deployed` current unless a later deployment of its name already is (a host
    /// never goes back to an older version once it serves a newer one). A Python function's
    /// interpreters are started ahead of its invocations, on `engine`.
    pub fn install(&self, deployed: Deployed, engine: &Engine) {
        if deployed.function.python_code().is_some() {
            engine.expect_python(&deployed.function);
        }
        let mut functions = self.functions.write().unwrap_or_else(|p| p.into_inner());
        let newer_installed = functions
            .get(deployed.function.name())
            .is_some_and(|f| f.generation() > deployed.generation());
        if !newer_installed {
            functions.insert(deployed.function.name().to_owned(), deployed);
        }
    }

    /// The names of the functions it has.
    pub fn names(&self) -> Vec<String> {
        let functions = self.functions.read().unwrap_or_else(|p| p.into_inner());
        functions.keys().cloned().collect()
    }

    /// Gives function `name` a new call token.
    pub fn set_call_token(&self, name: &str, token: &str) {
        let mut functions = self.functions.write().unwrap_or_else(|p| p.into_inner());
        if let Some(deployed) = functions.get_mut(name) {
            deployed.call_token = token.into();
        }
    }

    pub fn get(&self, name: &str) -> Option<Deployed> {
        self.functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn remove(&self, name: &str) {
        self.functions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}
