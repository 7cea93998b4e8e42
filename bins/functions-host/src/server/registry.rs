//! The current version of every deployed function, in memory, ready to invoke.

use std::collections::HashMap;
use std::sync::RwLock;

use functions_runtime::CompileError;
use functions_runtime::Engine;
use functions_runtime::Executor;
use functions_runtime::Function;
use functions_runtime::Isolation;
use functions_runtime::Limits;
use functions_runtime::Settings;
use functions_runtime::WasmModule;

use crate::store::Deployment;

/// Maps names to their current [`Function`]. Invocations clone the `Function` they start with,
/// so a redeploy never disturbs invocations in flight.
#[derive(Default)]
pub struct Registry {
    functions: RwLock<HashMap<String, Function>>,
}

/// How a stored deployment runs.
fn settings_of(deployment: &Deployment) -> Settings {
    Settings {
        env: deployment.env.clone(),
        isolation: Isolation::parse(&deployment.isolation).unwrap_or_default(),
        allow_net: deployment.allow_net.clone(),
        // Deployed functions have no `location`, as in Workers and Deno Deploy.
        location: None,
        limits: Limits::default(),
        executor: Executor::parse(&deployment.executor).unwrap_or_default(),
    }
}

/// The runnable form of a stored deployment. JavaScript modules are compiled already; a
/// WebAssembly function's stored artifact is loaded (compiled again only if `engine` cannot
/// load it).
pub fn function_of(deployment: &Deployment, engine: &Engine) -> Result<Function, CompileError> {
    let wasm = match &deployment.wasm {
        Some(wasm) => Some(engine.load_wasm(wasm.binary.clone(), &wasm.artifact)?),
        None => None,
    };
    Ok(function_with(deployment, wasm))
}

/// `deployment` as a [`Function`] whose WebAssembly, if it is a WebAssembly function, is `wasm`.
pub fn function_with(deployment: &Deployment, wasm: Option<WasmModule>) -> Function {
    let settings = settings_of(deployment);
    match wasm {
        Some(module) => Function::wasm(&deployment.name, deployment.version, module, settings),
        None => Function::new(
            &deployment.name,
            deployment.version,
            &deployment.entry,
            deployment.modules.clone(),
            settings,
        ),
    }
}

impl Registry {
    /// Makes `function` current unless a newer version already is.
    pub fn install(&self, function: Function) {
        let mut functions = self.functions.write().unwrap_or_else(|p| p.into_inner());
        let newer_installed = functions
            .get(function.name())
            .is_some_and(|f| f.version() > function.version());
        if !newer_installed {
            functions.insert(function.name().to_owned(), function);
        }
    }

    pub fn get(&self, name: &str) -> Option<Function> {
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
