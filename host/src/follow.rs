//! Serving what other hosts deploy: on a shared store ([`crate::Store::shared`]), each host
//! follows the store's events and brings its registry in line with the store: a function
//! deployed, redeployed, deleted or given a new token by another host is served so here within
//! moments of its commit. Events are only hints: for each, the host reads the function's current
//! deployment from the store, so events missed or seen twice do no harm. After a lost
//! connection ([`StoreEvent::Missed`]), and every [`RECONCILE_EVERY`] in any case, it compares
//! every function with the store.
//!
//! A host never goes back: once it serves a version it serves no older one of that deployment
//! ([`crate::registry::Registry::install`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use crate::Inner;
use crate::registry;
use crate::store::DeploymentSummary;
use crate::store::StoreEvent;

/// How often a host compares every function with the store, whatever it heard.
pub(crate) const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// The functions this host is changing itself (between its change in the store and in its
/// registry): following the store's event of such a change waits for the host to finish it,
/// instead of loading the same version a second time.
#[derive(Default)]
pub(crate) struct LocalChanges {
    names: Mutex<HashMap<String, usize>>,
    done: tokio::sync::Notify,
}

/// A change under way; it ends when dropped.
pub(crate) struct LocalChange<'a> {
    changes: &'a LocalChanges,
    name: String,
}

impl LocalChanges {
    /// Marks `name` as being changed by this host until the guard is dropped.
    pub fn begin(&self, name: &str) -> LocalChange<'_> {
        *self.lock().entry(name.to_owned()).or_default() += 1;
        LocalChange {
            changes: self,
            name: name.to_owned(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns once this host changes `name` no more.
    async fn settled(&self, name: &str) {
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if !self.lock().contains_key(name) {
                return;
            }
            done.await;
        }
    }
}

impl Drop for LocalChange<'_> {
    fn drop(&mut self) {
        let mut names = self.changes.lock();
        if let Some(count) = names.get_mut(&self.name) {
            *count -= 1;
            if *count == 0 {
                names.remove(&self.name);
            }
        }
        drop(names);
        self.changes.done.notify_waiters();
    }
}

/// Starts following the store, when it is shared (the task ends with the host).
pub(crate) fn spawn(inner: &Arc<Inner>) {
    if !inner.store.shared() {
        return;
    }
    let host = Arc::downgrade(inner);
    let mut events = inner.store.events();
    tokio::spawn(async move {
        let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reconcile.tick().await;
        loop {
            let heard = tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => Some(event),
                    Err(RecvError::Lagged(_)) => None,
                    Err(RecvError::Closed) => return,
                },
                _ = reconcile.tick() => None,
            };
            let Some(inner) = host.upgrade() else { return };
            match heard {
                Some(
                    StoreEvent::Deployed { name, .. }
                    | StoreEvent::Deleted { name }
                    | StoreEvent::TokenRotated { name },
                ) => follow_one(&inner, &name).await,
                Some(
                    StoreEvent::Logged { .. }
                    | StoreEvent::CallEnded { .. }
                    | StoreEvent::CallsWaiting { .. },
                ) => {}
                Some(StoreEvent::Missed) | None => follow_all(&inner).await,
            }
        }
    });
}

/// Whether this host serves `current` (the store's deployment of `name`, if any) as it is.
fn in_line(inner: &Inner, name: &str, current: Option<&DeploymentSummary>) -> bool {
    match (inner.registry.get(name), current) {
        (None, None) => true,
        (Some(installed), Some(current)) => {
            installed.generation() == (current.created_at, current.version)
                && *installed.call_token == current.call_token
        }
        _ => false,
    }
}

/// Brings every function in line with the store.
async fn follow_all(inner: &Arc<Inner>) {
    let summaries = match inner.store.list().await {
        Ok(summaries) => summaries,
        Err(err) => {
            eprintln!("functions-host: comparing the functions with the store: {err:#}");
            return;
        }
    };
    let mut names: Vec<String> = inner.registry.names();
    names.extend(summaries.iter().map(|s| s.name.clone()));
    names.sort();
    names.dedup();
    for name in names {
        let current = summaries.iter().find(|s| s.name == name);
        if !in_line(inner, &name, current) {
            follow_one(inner, &name).await;
        }
    }
}

/// Brings function `name` in line with the store, once this host is not changing it itself
/// (what the store says is read after that).
async fn follow_one(inner: &Arc<Inner>, name: &str) {
    inner.local_changes.settled(name).await;
    let current = match inner.store.list().await {
        Ok(summaries) => summaries.into_iter().find(|s| s.name == name),
        Err(err) => return eprintln!("functions-host: reading {name} from the store: {err:#}"),
    };
    if in_line(inner, name, current.as_ref()) {
        return;
    }
    let Some(current) = current else {
        return inner.remove_function(name);
    };
    if let Some(installed) = inner.registry.get(name)
        && installed.generation() == (current.created_at, current.version)
    {
        return inner.registry.set_call_token(name, &current.call_token);
    }
    let deployment = match inner.store.get(name).await {
        Ok(Some(deployment)) => deployment,
        Ok(None) => return inner.remove_function(name),
        Err(err) => {
            return eprintln!("functions-host: reading {name} from the store: {err:#}");
        }
    };
    match registry::function_of(
        &deployment,
        &inner.engine,
        (&inner.python, &inner.dotnet),
        inner.store.as_ref(),
    )
    .await
    {
        Ok(deployed) => inner.registry.install(deployed, &inner.engine),
        Err(err) => eprintln!(
            "functions-host: {name} version {} cannot be loaded: {err}",
            deployment.version()
        ),
    }
}
