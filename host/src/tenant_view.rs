//! The host as one API key sees it ([`Host::as_tenant`]): a function belongs to the key that
//! first deployed it, and to other keys it does not exist; a call's result is found only by the
//! key that made the call. An admin key, the embedding program and a host without keys see
//! everything.

use std::sync::Arc;
use std::time::Duration;

use functions_runtime::Function;

use crate::CallInput;
use crate::CallRequest;
use crate::CallStatus;
use crate::DeployError;
use crate::DeploySource;
use crate::Deployment;
use crate::DeploymentSummary;
use crate::Error;
use crate::ErrorKind;
use crate::Fetched;
use crate::Host;
use crate::Language;
use crate::MAX_RESULT_WAIT;
use crate::StoreEvent;
use crate::StoredLog;
use crate::Tenant;
use crate::calls;
use crate::deploy;
use crate::registry;
use crate::store::OwnedByAnother;

/// The host as one tenant may use it: [`Host::as_tenant`].
#[derive(Clone, Copy)]
pub struct TenantView<'a> {
    pub(crate) host: &'a Host,
    pub(crate) tenant: Option<&'a Tenant>,
}

impl TenantView<'_> {
    /// Whether the tenant may see and change a function owned by `owner`.
    fn may_use(&self, owner: Option<&str>) -> bool {
        self.tenant.is_none_or(|tenant| tenant.may_use(owner))
    }

    /// Whose functions the tenant is limited to (`None`: everyone's), for the store to check
    /// in the same step as it reads or changes one.
    fn scope(&self) -> Option<&str> {
        self.tenant.and_then(Tenant::scope)
    }

    /// Fails with [`ErrorKind::NotFound`] unless function `name` exists for this tenant.
    fn check(&self, name: &str) -> Result<(), Error> {
        match self.host.0.registry.get(name) {
            Some(deployed) if self.may_use(deployed.owner.as_deref()) => Ok(()),
            _ => Err(Error::function_not_found(name)),
        }
    }

    /// Fails with [`ErrorKind::BadRequest`] unless each binding of function `name` reaches a
    /// deployed function this tenant may use, or `name` itself. Another tenant's function is
    /// refused as one that is not deployed, so that its name does not leak.
    fn check_bindings(
        &self,
        name: &str,
        bindings: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), Error> {
        for (binding, target) in bindings {
            let reachable = target == name
                || self
                    .host
                    .0
                    .registry
                    .get(target)
                    .is_some_and(|deployed| self.may_use(deployed.owner.as_deref()));
            if !reachable {
                return Err(Error::bad_request(format!(
                    "binding {binding:?}: no function named {target:?} is deployed"
                )));
            }
        }
        Ok(())
    }

    /// Deploys a new version of function `name`: its code is checked and compiled first (bad
    /// code never replaces good code), then stored, then made current. A new function becomes
    /// the tenant's; another tenant's is [`ErrorKind::NotFound`]. Each of its bindings must
    /// reach a function the tenant may use (or itself).
    pub async fn deploy(
        &self,
        name: &str,
        source: DeploySource<'_>,
    ) -> Result<DeploymentSummary, Error> {
        let inner = &self.host.0;
        // Refused before any compiling; the store checks again as it stores.
        if let Some(deployed) = inner.registry.get(name)
            && !self.may_use(deployed.owner.as_deref())
        {
            return Err(Error::function_not_found(name));
        }
        let parsed = match source {
            DeploySource::Manifest(manifest) => deploy::from_manifest(name, manifest),
            DeploySource::Wasm(binary) => deploy::from_wasm(name, binary),
            // Transpiling is CPU work: keep it off the threads that serve other requests.
            DeploySource::Body { body, hints } => {
                let (name, body) = (name.to_owned(), body.to_vec());
                tokio::task::spawn_blocking(move || deploy::parse(&name, &hints, &body))
                    .await
                    .map_err(Error::internal)?
            }
        };
        let mut new = parsed.map_err(|err| match err {
            DeployError::Invalid(message) => Error::bad_request(message),
            DeployError::Compile(err) => Error::compile(name, err),
        })?;
        new.owner = self.scope().map(str::to_owned);
        self.check_bindings(name, &new.bindings)?;
        // The function as it would run, version 0 (never stored).
        let candidate = new.clone().stored(0, String::new(), None, (0, 0));
        let code = match (&mut new.wasm, &mut new.runtime_code) {
            (Some(wasm), _) => {
                let module = inner
                    .engine
                    .compile_wasm(wasm.binary.clone())
                    .await
                    .map_err(|err| Error::compile(name, err))?;
                wasm.artifact = module.artifact().clone();
                registry::Code::Wasm(module)
            }
            (None, Some(csharp)) if new.language == Language::CSharp => {
                // Booting the runtime and snapshotting it take CPU and memory: a few deploys
                // at a time.
                let _turn = inner.dotnet.deploy_turn().await;
                let ready = inner.dotnet.ready().await?;
                let stored = csharp.clone();
                let code = |snapshot| {
                    crate::dotnet::code(&ready.build, &candidate.summary.entry, &stored, snapshot)
                        .map_err(Error::bad_request)
                };
                // Its assemblies loaded into the runtime's baseline and its entry bound: its
                // snapshot is what invocations restore.
                let function =
                    registry::function_with(&candidate, registry::Code::Dotnet(code(None)?));
                let snapshot = inner
                    .dotnet
                    .snapshot(&inner.engine, &ready, &function)
                    .await?;
                csharp.snapshot = snapshot.to_bytes().into();
                let code = code(Some(Arc::new(snapshot)))?;
                // It must start from that snapshot within its own limits.
                let function =
                    registry::function_with(&candidate, registry::Code::Dotnet(code.clone()));
                inner
                    .engine
                    .check(&function)
                    .await
                    .map_err(|err| Error::compile(name, err))?;
                registry::Code::Dotnet(code)
            }
            (None, Some(python)) => {
                // Resolving, importing and snapshotting take network, CPU and memory: a few
                // deploys at a time.
                let _turn = inner.python.deploy_turn().await;
                if !python.requirements.is_empty() {
                    let requirements = python.requirements.clone();
                    let packages = tokio::task::spawn_blocking(move || {
                        crate::python::resolve_requirements(&requirements)
                    })
                    .await
                    .map_err(Error::internal)?
                    .map_err(Error::bad_request)?;
                    python.packages = Arc::new(packages);
                }
                // Imported once, from the baseline; its snapshot is what invocations restore.
                let ready = inner.python.ready(&inner.engine).await?;
                let stored = python.clone();
                let code = |snapshot| {
                    crate::python::code(&ready, &candidate.summary.entry, &stored, snapshot)
                        .map_err(Error::bad_request)
                };
                let function = Function::python(
                    name,
                    0,
                    code(ready.baseline.clone())?,
                    registry::settings_of(&candidate),
                );
                let snapshot = inner
                    .engine
                    .snapshot_python(&function)
                    .await
                    .map_err(|err| Error::compile(name, crate::python::import_error(err)))?;
                python.snapshot = snapshot.to_bytes().into();
                let code = code(Arc::new(snapshot))?;
                // It must start from that snapshot within its own limits.
                let function =
                    Function::python(name, 0, code.clone(), registry::settings_of(&candidate));
                inner
                    .engine
                    .check(&function)
                    .await
                    .map_err(|err| Error::compile(name, err))?;
                registry::Code::Python(code)
            }
            (None, None) => {
                let function = registry::function_with(&candidate, registry::Code::Modules);
                inner
                    .engine
                    .check(&function)
                    .await
                    .map_err(|err| Error::compile(name, err))?;
                registry::Code::Modules
            }
        };
        let _change = inner.local_changes.begin(name);
        let deployment = inner.store.deploy(new).await.map_err(|err| {
            if err.downcast_ref::<OwnedByAnother>().is_some() {
                Error::function_not_found(name)
            } else {
                Error::store(err)
            }
        })?;
        inner
            .registry
            .install(registry::deployed_with(&deployment, code), &inner.engine);
        Ok(deployment.summary)
    }

    /// Queues an asynchronous call of `name` for this tenant; its id. The call is stored
    /// before this returns: it runs even if the host restarts first.
    pub async fn call(&self, name: &str, request: CallRequest) -> Result<String, Error> {
        self.host.0.refuse_if_draining()?;
        self.check(name)?;
        let input = CallInput {
            content_type: request.content_type,
            query: request.query,
            payload: request.payload,
            traceparent: request.traceparent,
        };
        calls::create(&self.host.0, name, input, self.tenant.cloned()).await
    }

    /// The outcome of call `id` (one this tenant made), waiting up to `wait` (at most
    /// [`MAX_RESULT_WAIT`]) for it to end. Once returned as done, it is forgotten.
    /// [`ErrorKind::NotFound`] for an unknown (or already fetched) call, [`ErrorKind::Gone`]
    /// for one rotated out of its function's result cache.
    pub async fn result(&self, id: &str, wait: Duration) -> Result<CallStatus, Error> {
        let inner = &self.host.0;
        let scope = self.scope();
        let deadline = tokio::time::Instant::now() + wait.min(MAX_RESULT_WAIT);
        let mut events = inner.store.events();
        loop {
            match inner
                .store
                .fetch_call(id, scope)
                .await
                .map_err(Error::store)?
            {
                Fetched::Done(outcome) => return Ok(CallStatus::Done(outcome)),
                Fetched::RotatedOut => {
                    return Err(Error::new(
                        ErrorKind::Gone,
                        format!(
                            "the result of call {id} was rotated out of its function's result \
                             cache before it was fetched"
                        ),
                    ));
                }
                Fetched::Unknown => {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("no call {id:?} (a result is kept until it is fetched once)"),
                    ));
                }
                Fetched::NotYet(state) => loop {
                    match tokio::time::timeout_at(deadline, events.recv()).await {
                        Err(_) => return Ok(CallStatus::Waiting(state)),
                        Ok(Ok(StoreEvent::CallEnded { id: ended })) if ended == id => break,
                        // Missed events might have been this call's: look again.
                        Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_)))
                        | Ok(Ok(StoreEvent::Missed)) => break,
                        Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                            return Ok(CallStatus::Waiting(state));
                        }
                        Ok(Ok(_)) => {}
                    }
                },
            }
        }
    }

    /// Up to `limit` of function `name`'s log lines with ids above `after`, oldest first.
    pub async fn logs(&self, name: &str, after: i64, limit: u32) -> Result<Vec<StoredLog>, Error> {
        self.check(name)?;
        self.host
            .0
            .store
            .logs(name, after, limit, self.scope())
            .await
            .map_err(Error::store)
    }

    /// Function `name`'s log lines with ids above `after`, then each new line as it is stored.
    pub fn follow_logs(&self, name: &str, after: i64) -> LogFollower {
        LogFollower {
            host: self.host.clone(),
            tenant: self.tenant.cloned(),
            events: self.host.0.store.events(),
            name: name.to_owned(),
            after,
        }
    }

    /// The current version (no code) of every function this tenant may use.
    pub async fn list(&self) -> Result<Vec<DeploymentSummary>, Error> {
        let mut list = self.host.0.store.list().await.map_err(Error::store)?;
        list.retain(|summary| self.may_use(summary.owner.as_deref()));
        Ok(list)
    }

    /// Function `name`'s current version, code included.
    pub async fn get(&self, name: &str) -> Result<Deployment, Error> {
        self.host
            .0
            .store
            .get(name)
            .await
            .map_err(Error::store)?
            .filter(|deployment| self.may_use(deployment.summary.owner.as_deref()))
            .ok_or_else(|| Error::function_not_found(name))
    }

    /// Deletes function `name`, its versions and its logs.
    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        self.check(name)?;
        let inner = &self.host.0;
        let _change = inner.local_changes.begin(name);
        if !inner
            .store
            .delete(name, self.scope())
            .await
            .map_err(Error::store)?
        {
            return Err(Error::function_not_found(name));
        }
        inner.remove_function(name);
        Ok(())
    }

    /// Gives function `name` a new call token (its key-less address); the old one stops
    /// working. The new token.
    pub async fn rotate_token(&self, name: &str) -> Result<String, Error> {
        self.check(name)?;
        let inner = &self.host.0;
        let _change = inner.local_changes.begin(name);
        let token = inner
            .store
            .rotate_call_token(name, self.scope())
            .await
            .map_err(Error::store)?
            .ok_or_else(|| Error::function_not_found(name))?;
        inner.registry.set_call_token(name, &token);
        Ok(token)
    }
}

/// A function's log lines as they are stored: [`Host::follow_logs`].
pub struct LogFollower {
    host: Host,
    tenant: Option<Tenant>,
    events: tokio::sync::broadcast::Receiver<StoreEvent>,
    name: String,
    after: i64,
}

impl LogFollower {
    /// The next lines (at least one), waiting for them to be stored.
    pub async fn next(&mut self) -> Result<Vec<StoredLog>, Error> {
        loop {
            let lines = self
                .host
                .as_tenant(self.tenant.as_ref())
                .logs(&self.name, self.after, 10_000)
                .await?;
            if let Some(last) = lines.last() {
                self.after = last.id;
                return Ok(lines);
            }
            loop {
                match self.events.recv().await {
                    Ok(StoreEvent::Logged { name }) if name == self.name => break,
                    Ok(StoreEvent::Deleted { name }) if name == self.name => {
                        return Err(Error::function_not_found(&self.name));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_))
                    | Ok(StoreEvent::Missed) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        return Err(Error::new(ErrorKind::Unavailable, "the store closed"));
                    }
                    Ok(_) => {}
                }
            }
        }
    }
}
