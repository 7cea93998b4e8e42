//! The current version of every deployed function, in memory, ready to invoke.

use std::collections::HashMap;
use std::sync::RwLock;

use functions_runtime::Function;
use functions_runtime::Isolation;
use functions_runtime::Settings;

use crate::store::Deployment;

/// Maps names to their current [`Function`]. Invocations clone the `Function` they start with,
/// so a redeploy never disturbs invocations in flight.
#[derive(Default)]
pub struct Registry {
    functions: RwLock<HashMap<String, Function>>,
}

/// The runnable form of a stored deployment (its modules are compiled already).
pub fn function_of(deployment: &Deployment) -> Function {
    Function::new(
        &deployment.name,
        deployment.version,
        &deployment.entry,
        deployment.modules.clone(),
        Settings {
            env: deployment.env.clone(),
            isolation: Isolation::parse(&deployment.isolation).unwrap_or_default(),
            allow_net: deployment.allow_net.clone(),
            // Deployed functions have no `location`, as in Workers and Deno Deploy.
            location: None,
        },
    )
}

impl Registry {
    /// Makes `deployment` current unless a newer version already is.
    pub fn install(&self, deployment: &Deployment) {
        let mut functions = self.functions.write().unwrap_or_else(|p| p.into_inner());
        let newer_installed = functions
            .get(&deployment.name)
            .is_some_and(|f| f.version() > deployment.version);
        if !newer_installed {
            functions.insert(deployment.name.clone(), function_of(deployment));
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
