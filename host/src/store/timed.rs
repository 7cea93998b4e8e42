//! A [`Store`] that times every operation of another into the host's metrics
//! (`functions_host_store_seconds{operation}`).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::CallInput;
use super::CallOutcome;
use super::Claim;
use super::Claimed;
use super::Deployment;
use super::DeploymentSummary;
use super::Fetched;
use super::LogLines;
use super::NewDeployment;
use super::QueueLimits;
use super::Queued;
use super::QueuedCall;
use super::Store;
use super::StoreEvent;
use super::StoreResult;
use super::StoredLog;
use crate::metrics::Metrics;
use crate::metrics::StoreTimer;

/// `store`, timed into `metrics`.
pub(crate) struct Timed {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Timed {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { store, metrics }
    }

    /// Times one `operation` until the returned guard is dropped.
    fn time(&self, operation: &str) -> StoreTimer {
        StoreTimer::start(self.metrics.store_operation(operation))
    }
}

#[async_trait]
impl Store for Timed {
    async fn deploy(&self, new: NewDeployment) -> StoreResult<Deployment> {
        let _timer = self.time("deploy");
        self.store.deploy(new).await
    }

    async fn current_deployments(&self) -> StoreResult<Vec<Deployment>> {
        let _timer = self.time("current_deployments");
        self.store.current_deployments().await
    }

    async fn list(&self) -> StoreResult<Vec<DeploymentSummary>> {
        let _timer = self.time("list");
        self.store.list().await
    }

    async fn get(&self, name: &str) -> StoreResult<Option<Deployment>> {
        let _timer = self.time("get");
        self.store.get(name).await
    }

    async fn delete(&self, name: &str, owner: Option<&str>) -> StoreResult<bool> {
        let _timer = self.time("delete");
        self.store.delete(name, owner).await
    }

    async fn replace_snapshot(
        &self,
        name: &str,
        version: u64,
        snapshot: Arc<[u8]>,
    ) -> StoreResult<bool> {
        let _timer = self.time("replace_snapshot");
        (self.store).replace_snapshot(name, version, snapshot).await
    }

    async fn rotate_call_token(
        &self,
        name: &str,
        owner: Option<&str>,
    ) -> StoreResult<Option<String>> {
        let _timer = self.time("rotate_call_token");
        self.store.rotate_call_token(name, owner).await
    }

    async fn append_logs(&self, batch: Vec<LogLines>) -> StoreResult<()> {
        let _timer = self.time("append_logs");
        self.store.append_logs(batch).await
    }

    async fn logs(
        &self,
        name: &str,
        after: i64,
        limit: u32,
        owner: Option<&str>,
    ) -> StoreResult<Vec<StoredLog>> {
        let _timer = self.time("logs");
        self.store.logs(name, after, limit, owner).await
    }

    async fn add_call(
        &self,
        call: &QueuedCall,
        input: CallInput,
        limits: QueueLimits,
    ) -> StoreResult<Queued> {
        let _timer = self.time("add_call");
        self.store.add_call(call, input, limits).await
    }

    async fn claim_calls(&self, claim: Claim) -> StoreResult<Claimed> {
        let _timer = self.time("claim_calls");
        self.store.claim_calls(claim).await
    }

    async fn release_call(&self, id: &str, node: &str) -> StoreResult<()> {
        let _timer = self.time("release_call");
        self.store.release_call(id, node).await
    }

    async fn call_input(&self, id: &str) -> StoreResult<Option<CallInput>> {
        let _timer = self.time("call_input");
        self.store.call_input(id).await
    }

    async fn start_call(&self, id: &str, node: &str) -> StoreResult<bool> {
        let _timer = self.time("start_call");
        self.store.start_call(id, node).await
    }

    async fn finish_call(
        &self,
        id: &str,
        node: &str,
        outcome: &CallOutcome,
        cap: u64,
    ) -> StoreResult<Vec<String>> {
        let _timer = self.time("finish_call");
        self.store.finish_call(id, node, outcome, cap).await
    }

    async fn fetch_call(&self, id: &str, tenant: Option<&str>) -> StoreResult<Fetched> {
        let _timer = self.time("fetch_call");
        self.store.fetch_call(id, tenant).await
    }

    async fn pending_calls(&self) -> StoreResult<Vec<(String, usize)>> {
        let _timer = self.time("pending_calls");
        self.store.pending_calls().await
    }

    async fn heartbeat(&self, node: &str) -> StoreResult<usize> {
        let _timer = self.time("heartbeat");
        self.store.heartbeat(node).await
    }

    async fn reap_calls(&self, node: &str, holding: &[String]) -> StoreResult<Vec<QueuedCall>> {
        let _timer = self.time("reap_calls");
        self.store.reap_calls(node, holding).await
    }

    fn events(&self) -> broadcast::Receiver<StoreEvent> {
        self.store.events()
    }

    fn shared(&self) -> bool {
        self.store.shared()
    }
}
