//! What the host counts and measures: invocations by function, language and outcome; where their
//! time goes (waiting for their turn, starting, running); isolates and instances alive; pool
//! hits; queues; calls; the store's latency. [`crate::Host::metrics_text`] writes it all in
//! Prometheus' text format, and [`crate::Host::metrics_summary`] as JSON with the last hour's
//! history, sampled every [`STEP`] from the same counters (the dashboard's charts).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use prometheus::Histogram;
use prometheus::HistogramOpts;
use prometheus::HistogramVec;
use prometheus::IntCounterVec;
use prometheus::IntGauge;
use prometheus::IntGaugeVec;
use prometheus::Opts;
use prometheus::Registry;
use prometheus::proto::MetricFamily;
use serde::Serialize;

use crate::Host;
use crate::Inner;
use crate::Language;
use crate::Tenant;

/// How often the history takes a sample.
pub const STEP: Duration = Duration::from_secs(10);

/// Samples kept: an hour's.
const HISTORY_STEPS: usize = 360;

/// Upper bounds of the latency histograms, in seconds: 0.5 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds of the store's latency histogram, in seconds: 0.1 ms to 5 s.
const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// How an invocation came: from a client (HTTP, the embedder, another function's binding) or as
/// an asynchronous call from the queue.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Via {
    /// A synchronous invocation.
    Invocation,
    /// An asynchronous call.
    Call,
    /// A session with another function (through a binding) or a capnweb client: an
    /// invocation that lasts as long as its caller wants, left out of the latency figures.
    Session,
}

impl Via {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Via::Invocation => "invocation",
            Via::Call => "call",
            Via::Session => "session",
        }
    }
}

/// The host's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    invocations: IntCounterVec,
    queue_wait: HistogramVec,
    start: HistogramVec,
    run: HistogramVec,
    latency: HistogramVec,
    pool: IntCounterVec,
    calls: IntCounterVec,
    store: HistogramVec,
    /// Set when the metrics are read, by one reader at a time (each sets them for the
    /// functions it may see).
    gauges: Gauges,
    reading: Mutex<()>,
    history: Mutex<History>,
}

/// Values read from the host when the metrics are read.
struct Gauges {
    isolates: IntGauge,
    wasm_instances: IntGauge,
    python_ready: IntGauge,
    functions: IntGauge,
    nodes: IntGauge,
    running: IntGaugeVec,
    waiting: IntGaugeVec,
    calls: IntGaugeVec,
}

/// What the host knows right now, for the gauges.
pub(crate) struct Now {
    /// V8 isolates alive in the process.
    pub isolates: usize,
    /// WebAssembly guests running.
    pub wasm_instances: usize,
    /// Python interpreters started ahead, waiting for a function.
    pub python_ready: usize,
    /// Hosts sharing the store, this one included.
    pub nodes: usize,
    /// Per deployed function: its queue and calls now.
    pub functions: BTreeMap<String, FunctionNow>,
}

/// One function's queue and calls now.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct FunctionNow {
    /// Its invocations and calls running on this host.
    pub running: usize,
    /// Its synchronous invocations waiting for their turn on this host.
    pub queued: usize,
    /// Its asynchronous calls.
    pub calls: CallsNow,
}

/// A function's asynchronous calls now.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CallsNow {
    /// Waiting in the store, claimed by no host.
    pub pending: usize,
    /// Claimed by this host: waiting for their turn or running.
    pub claimed: usize,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter")
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("a valid histogram")
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("a valid gauge")
}

fn gauges(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid gauge")
}

impl Metrics {
    pub fn new() -> Self {
        let fl = &["function", "language"];
        let metrics = Self {
            registry: Registry::new(),
            invocations: counter(
                "functions_host_invocations_total",
                "Invocations that ran or were refused, by function, language, how they came \
                 (invocation or call) and outcome (ok, or the error's code).",
                &["function", "language", "via", "outcome"],
            ),
            queue_wait: histogram(
                "functions_host_queue_wait_seconds",
                "Time an invocation (or a claimed call) waited for its turn under the \
                 function's concurrency.",
                &["function", "via"],
                LATENCY_BUCKETS,
            ),
            start: histogram(
                "functions_host_start_seconds",
                "Time from the engine receiving an invocation to its isolate or instance being \
                 ready to run it.",
                fl,
                LATENCY_BUCKETS,
            ),
            run: histogram(
                "functions_host_run_seconds",
                "Time from an invocation's start to its response.",
                fl,
                LATENCY_BUCKETS,
            ),
            latency: histogram(
                "functions_host_invocation_seconds",
                "Time from the engine receiving an invocation to its response (start and run).",
                fl,
                LATENCY_BUCKETS,
            ),
            pool: counter(
                "functions_host_pool_total",
                "JavaScript and Python invocations by whether an isolate was ready for them \
                 (prepared ahead or kept warm: hit) or made on their path (miss).",
                &["function", "result"],
            ),
            calls: counter(
                "functions_host_calls_total",
                "Asynchronous calls queued, and ended (finished or failed) on this host.",
                &["function", "event"],
            ),
            store: histogram(
                "functions_host_store_seconds",
                "Latency of the store's operations.",
                &["operation"],
                STORE_BUCKETS,
            ),
            gauges: Gauges {
                isolates: gauge(
                    "functions_host_isolates",
                    "V8 isolates alive: running, prepared ahead, kept warm or being torn down.",
                ),
                wasm_instances: gauge(
                    "functions_host_wasm_instances",
                    "WebAssembly instances running.",
                ),
                python_ready: gauge(
                    "functions_host_python_interpreters_ready",
                    "Python interpreters started ahead, waiting for an invocation.",
                ),
                functions: gauge("functions_host_functions", "Functions deployed."),
                nodes: gauge(
                    "functions_host_nodes",
                    "Hosts sharing the store, this one included.",
                ),
                running: gauges(
                    "functions_host_running",
                    "Invocations and calls running on this host, by function.",
                    &["function"],
                ),
                waiting: gauges(
                    "functions_host_queued",
                    "Synchronous invocations waiting for their turn on this host, by function.",
                    &["function"],
                ),
                calls: gauges(
                    "functions_host_calls",
                    "Asynchronous calls by function and state: pending (in the store, claimed \
                     by no host) or claimed (by this host, waiting for their turn or running).",
                    &["function", "state"],
                ),
            },
            history: Mutex::new(History::default()),
            reading: Mutex::new(()),
        };
        let registry = &metrics.registry;
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.invocations.clone()),
            Box::new(metrics.queue_wait.clone()),
            Box::new(metrics.start.clone()),
            Box::new(metrics.run.clone()),
            Box::new(metrics.latency.clone()),
            Box::new(metrics.pool.clone()),
            Box::new(metrics.calls.clone()),
            Box::new(metrics.store.clone()),
            Box::new(metrics.gauges.isolates.clone()),
            Box::new(metrics.gauges.wasm_instances.clone()),
            Box::new(metrics.gauges.python_ready.clone()),
            Box::new(metrics.gauges.functions.clone()),
            Box::new(metrics.gauges.nodes.clone()),
            Box::new(metrics.gauges.running.clone()),
            Box::new(metrics.gauges.waiting.clone()),
            Box::new(metrics.gauges.calls.clone()),
        ];
        for collector in collectors {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        let first = metrics.totals();
        metrics.lock_history().last = first;
        metrics
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an invocation of `function` that ended with `outcome` (`ok`, or an error's code),
    /// with its engine timing when it started.
    pub fn invoked(
        &self,
        function: &str,
        language: Language,
        via: Via,
        outcome: &str,
        timing: Option<functions_runtime::Timing>,
    ) {
        let language = language.as_str();
        (self.invocations)
            .with_label_values(&[function, language, via.as_str(), outcome])
            .inc();
        let Some(timing) = timing.filter(|_| !matches!(via, Via::Session)) else {
            return;
        };
        let labels = [function, language];
        (self.start.with_label_values(&labels)).observe(timing.start.as_secs_f64());
        (self.run.with_label_values(&labels)).observe(timing.run.as_secs_f64());
        (self.latency.with_label_values(&labels))
            .observe((timing.start + timing.run).as_secs_f64());
        if language != Language::Wasm.as_str() {
            let result = if timing.ready { "hit" } else { "miss" };
            self.pool.with_label_values(&[function, result]).inc();
        }
    }

    /// Records how long an invocation (or claimed call) of `function` waited for its turn.
    pub fn waited(&self, function: &str, via: Via, waited: Duration) {
        (self.queue_wait.with_label_values(&[function, via.as_str()]))
            .observe(waited.as_secs_f64());
    }

    /// Counts a call event of `function`: `queued`, `finished` or `failed`.
    pub fn call(&self, function: &str, event: &str) {
        self.calls.with_label_values(&[function, event]).inc();
    }

    /// Drops every series and history entry of function `name`.
    pub fn forget(&self, name: &str) {
        fn drop_series<T: prometheus::core::MetricVecBuilder>(
            vec: &prometheus::core::MetricVec<T>,
            name: &str,
        ) {
            for metric in vec.collect_metrics() {
                let labels: HashMap<&str, &str> = (metric.get_label().iter())
                    .map(|label| (label.name(), label.value()))
                    .collect();
                if labels.get("function") == Some(&name) {
                    let _ = vec.remove(&labels);
                }
            }
        }
        drop_series(&self.invocations, name);
        drop_series(&self.queue_wait, name);
        drop_series(&self.start, name);
        drop_series(&self.run, name);
        drop_series(&self.latency, name);
        drop_series(&self.pool, name);
        drop_series(&self.calls, name);
        let mut history = self.lock_history();
        history.last.functions.remove(name);
        history.last.latency.remove(name);
        for sample in &mut history.samples {
            sample.keep_only(&|function: &str| function != name);
        }
    }

    /// The histogram of the store's `operation`.
    pub fn store_operation(&self, operation: &str) -> Histogram {
        self.store.with_label_values(&[operation])
    }

    /// Sets the gauges from `now` and gathers every metric family.
    fn gather(&self, now: &Now) -> Vec<MetricFamily> {
        let gauges = &self.gauges;
        gauges.isolates.set(now.isolates as i64);
        gauges.wasm_instances.set(now.wasm_instances as i64);
        gauges.python_ready.set(now.python_ready as i64);
        gauges.nodes.set(now.nodes as i64);
        gauges.functions.set(now.functions.len() as i64);
        // Deleted functions leave the gauges (their counters stay, as counters do).
        gauges.running.reset();
        gauges.waiting.reset();
        gauges.calls.reset();
        for (name, function) in &now.functions {
            let name = name.as_str();
            (gauges.running.with_label_values(&[name])).set(function.running as i64);
            (gauges.waiting.with_label_values(&[name])).set(function.queued as i64);
            (gauges.calls.with_label_values(&[name, "pending"])).set(function.calls.pending as i64);
            (gauges.calls.with_label_values(&[name, "claimed"])).set(function.calls.claimed as i64);
        }
        self.registry.gather()
    }

    /// Every metric in Prometheus' text format; series of functions `visible` refuses are
    /// left out.
    pub fn text(&self, now: &Now, visible: impl Fn(&str) -> bool) -> String {
        let _reading = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        let mut families = self.gather(now);
        for family in &mut families {
            family.mut_metric().retain(|metric| {
                metric
                    .get_label()
                    .iter()
                    .find(|label| label.name() == "function")
                    .is_none_or(|label| visible(label.value()))
            });
        }
        families.retain(|family| !family.get_metric().is_empty());
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .expect("metric families are well formed")
    }

    /// Takes the history's sample of the step that just ended.
    pub fn sample(&self, at_unix_ms: i64) {
        let totals = self.totals();
        let mut history = self.lock_history();
        let sample = Sample::between(&history.last, &totals, at_unix_ms);
        history.last = totals;
        history.samples.push_back(sample);
        if history.samples.len() > HISTORY_STEPS {
            history.samples.pop_front();
        }
    }

    /// The last hour's samples, oldest first, and the step under way so far (marked partial),
    /// with the functions `visible` refuses left out.
    pub fn history(&self, now_unix_ms: i64, visible: impl Fn(&str) -> bool) -> Vec<Sample> {
        let totals = self.totals();
        let history = self.lock_history();
        let mut current = Sample::between(&history.last, &totals, now_unix_ms);
        current.partial = true;
        let mut samples: Vec<Sample> = history.samples.iter().cloned().collect();
        samples.push(current);
        for sample in &mut samples {
            sample.keep_only(&visible);
        }
        samples
    }

    /// The counters the history samples, as they stand.
    fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for metric in self.invocations.collect_metrics() {
            let labels = metric.get_label();
            let value = |name: &str| {
                labels
                    .iter()
                    .find(|label| label.name() == name)
                    .map_or("", |label| label.value())
            };
            let count = metric.get_counter().get_value() as u64;
            let entry = totals
                .functions
                .entry(value("function").to_owned())
                .or_default();
            entry.invocations += count;
            if value("outcome") != "ok" {
                entry.errors += count;
            }
        }
        for metric in self.latency.collect_metrics() {
            let histogram = metric.get_histogram();
            let function = (metric.get_label().iter())
                .find(|label| label.name() == "function")
                .map_or("", |label| label.value());
            let latency = totals.latency.entry(function.to_owned()).or_default();
            latency.count += histogram.get_sample_count();
            if latency.buckets.is_empty() {
                latency.buckets = vec![0; LATENCY_BUCKETS.len()];
            }
            for (slot, bucket) in latency.buckets.iter_mut().zip(histogram.get_bucket()) {
                *slot += bucket.cumulative_count();
            }
        }
        totals
    }
}

/// The metrics of a collector, as the registry would gather them.
trait CollectMetrics {
    fn collect_metrics(&self) -> Vec<prometheus::proto::Metric>;
}

impl<T: prometheus::core::Collector> CollectMetrics for T {
    fn collect_metrics(&self) -> Vec<prometheus::proto::Metric> {
        self.collect()
            .into_iter()
            .flat_map(|mut family| family.take_metric())
            .collect()
    }
}

/// The last hour's samples, and the counters as they stood at the last one.
#[derive(Default)]
struct History {
    samples: VecDeque<Sample>,
    last: Totals,
}

/// Counters the history samples.
#[derive(Clone, Default)]
struct Totals {
    functions: HashMap<String, Counts>,
    /// Per function: the latency histogram's count and cumulative bucket counts.
    latency: HashMap<String, Buckets>,
}

#[derive(Clone, Default)]
struct Buckets {
    count: u64,
    buckets: Vec<u64>,
}

/// Invocations and the errors among them.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Invocations (synchronous and calls) that ended, or were refused.
    pub invocations: u64,
    /// Those that did not end `ok`.
    pub errors: u64,
}

/// One step of the history.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// When the step ended (Unix milliseconds), or now for the step under way.
    pub at: i64,
    /// Invocations in the step.
    pub invocations: u64,
    /// Those that did not end `ok`.
    pub errors: u64,
    /// Latency percentiles of the invocations in the step (start and run), estimated from the
    /// histogram's buckets as Prometheus' `histogram_quantile` does; `None` without any.
    pub latency_ms: Option<Percentiles>,
    /// Per function with invocations in the step.
    pub functions: BTreeMap<String, Counts>,
    /// Whether this is the step under way.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// The latency buckets' counts in the step (not shown), for the percentiles of the
    /// functions kept.
    #[serde(skip)]
    latency: BTreeMap<String, Vec<u64>>,
}

/// Latency percentiles, in milliseconds.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Percentiles {
    /// The median.
    pub p50: f64,
    /// The 99th percentile.
    pub p99: f64,
}

impl Sample {
    /// What happened between `before` and `after`.
    fn between(before: &Totals, after: &Totals, at: i64) -> Self {
        let mut functions = BTreeMap::new();
        for (name, counts) in &after.functions {
            let was = before.functions.get(name).copied().unwrap_or_default();
            let step = Counts {
                invocations: counts.invocations.saturating_sub(was.invocations),
                errors: counts.errors.saturating_sub(was.errors),
            };
            if step.invocations > 0 {
                functions.insert(name.clone(), step);
            }
        }
        let mut latency = BTreeMap::new();
        for (name, buckets) in &after.latency {
            let was = before.latency.get(name);
            let step: Vec<u64> = (buckets.buckets.iter().enumerate())
                .map(|(i, count)| {
                    count.saturating_sub(was.and_then(|w| w.buckets.get(i).copied()).unwrap_or(0))
                })
                .collect();
            let count = buckets.count.saturating_sub(was.map_or(0, |w| w.count));
            if count > 0 {
                // The last, implicit bucket (+Inf) holds all of them.
                let mut step = step;
                step.push(count);
                latency.insert(name.clone(), step);
            }
        }
        let mut sample = Self {
            at,
            invocations: 0,
            errors: 0,
            latency_ms: None,
            functions,
            partial: false,
            latency,
        };
        sample.total();
        sample
    }

    /// Keeps only the functions `visible` allows, and totals them again.
    fn keep_only(&mut self, visible: &impl Fn(&str) -> bool) {
        self.functions.retain(|name, _| visible(name));
        self.latency.retain(|name, _| visible(name));
        self.total();
    }

    /// Sums the functions' counts and estimates the percentiles of their latencies.
    fn total(&mut self) {
        self.invocations = self.functions.values().map(|c| c.invocations).sum();
        self.errors = self.functions.values().map(|c| c.errors).sum();
        let mut cumulative = vec![0u64; LATENCY_BUCKETS.len() + 1];
        for buckets in self.latency.values() {
            for (slot, count) in cumulative.iter_mut().zip(buckets) {
                *slot += count;
            }
        }
        self.latency_ms = Percentiles::estimate(&cumulative);
    }
}

impl Percentiles {
    /// The percentiles of a histogram of cumulative counts over [`LATENCY_BUCKETS`] (and +Inf,
    /// last); `None` when it holds nothing.
    fn estimate(cumulative: &[u64]) -> Option<Self> {
        let total = *cumulative.last()?;
        if total == 0 {
            return None;
        }
        let quantile = |q: f64| {
            let rank = q * total as f64;
            let bucket = cumulative
                .iter()
                .position(|&count| count as f64 >= rank)
                .unwrap_or(cumulative.len() - 1);
            let Some(&upper) = LATENCY_BUCKETS.get(bucket) else {
                // Beyond the last bound: that bound is all that is known.
                return LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1] * 1000.0;
            };
            let (lower, below) = match bucket {
                0 => (0.0, 0),
                _ => (LATENCY_BUCKETS[bucket - 1], cumulative[bucket - 1]),
            };
            let inside = (cumulative[bucket] - below) as f64;
            let fraction = if inside > 0.0 {
                (rank - below as f64) / inside
            } else {
                1.0
            };
            (lower + (upper - lower) * fraction.clamp(0.0, 1.0)) * 1000.0
        };
        Some(Self {
            p50: quantile(0.5),
            p99: quantile(0.99),
        })
    }
}

/// Times a store operation into its histogram.
pub(crate) struct StoreTimer(Histogram, Instant);

impl StoreTimer {
    pub fn start(histogram: Histogram) -> Self {
        Self(histogram, Instant::now())
    }
}

impl Drop for StoreTimer {
    fn drop(&mut self) {
        self.0.observe(self.1.elapsed().as_secs_f64());
    }
}

/// One function in [`MetricsSummary`].
#[derive(Clone, Debug, Serialize)]
pub struct FunctionMetrics {
    /// Its invocations (synchronous and calls) since the host started, ended or refused.
    pub invocations: u64,
    /// Those that did not end `ok`.
    pub errors: u64,
    /// Its queue and calls now.
    #[serde(flatten)]
    pub now: FunctionNow,
}

/// The metrics as JSON for the dashboard: each function's totals and queue now, and the last
/// hour's history.
#[derive(Clone, Debug, Serialize)]
pub struct MetricsSummary {
    /// This host's name on the store.
    pub node: String,
    /// The history's step, in seconds.
    pub step_seconds: u64,
    /// Per deployed function.
    pub functions: BTreeMap<String, FunctionMetrics>,
    /// One sample per step, oldest first, the last one the step under way.
    pub history: Vec<Sample>,
}

/// Samples the history every [`STEP`] while the host is alive.
pub(crate) fn spawn_sampler(inner: &Arc<Inner>) {
    let inner = Arc::downgrade(inner);
    tokio::spawn(async move {
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + STEP, STEP);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            inner
                .metrics
                .sample(crate::store::unix_millis(std::time::SystemTime::now()));
        }
    });
}

impl Inner {
    /// Forgets a deleted function: it is no longer served, and its metrics go (a function
    /// deployed under its name later, maybe by another key, starts from nothing).
    pub(crate) fn remove_function(&self, name: &str) {
        self.registry.remove(name);
        self.metrics.forget(name);
    }

    /// What the gauges show now, for the functions `visible` allows.
    fn metrics_now(&self, visible: &impl Fn(&str) -> bool) -> Now {
        let functions = (self.registry.names().into_iter())
            .filter(|name| visible(name))
            .map(|name| {
                let (running, queued) = self.lanes.occupancy(&name);
                let calls = CallsNow {
                    pending: self.dispatcher.pending(&name),
                    claimed: self.dispatcher.claimed(&name),
                };
                let now = FunctionNow {
                    running,
                    queued,
                    calls,
                };
                (name, now)
            })
            .collect();
        Now {
            isolates: self.engine.live_isolates(),
            wasm_instances: self.engine.wasm_stats().running,
            python_ready: self.engine.python_interpreters_ready(),
            nodes: self.dispatcher.live_nodes(),
            functions,
        }
    }

    /// Whether `tenant` (none: the host has no keys) sees the metrics of function `name`: its
    /// own, or any for an admin. A deleted function's are an admin's only.
    fn sees_metrics_of(&self, tenant: Option<&Tenant>, name: &str) -> bool {
        match tenant {
            None => true,
            Some(tenant) if tenant.admin => true,
            Some(tenant) => self
                .registry
                .get(name)
                .is_some_and(|deployed| tenant.may_use(deployed.owner.as_deref())),
        }
    }
}

impl Host {
    /// Every metric in Prometheus' text format (what `GET /metrics` serves), as `tenant` (none:
    /// the host has no keys) may see them: the series of other tenants' functions are left out.
    pub fn metrics_text(&self, tenant: Option<&Tenant>) -> String {
        let inner = &self.0;
        let visible = |name: &str| inner.sees_metrics_of(tenant, name);
        let now = inner.metrics_now(&visible);
        inner.metrics.text(&now, visible)
    }

    /// The metrics as JSON for the dashboard (`GET /api/metrics`), as `tenant` may see them.
    pub fn metrics_summary(&self, tenant: Option<&Tenant>) -> MetricsSummary {
        let inner = &self.0;
        let visible = |name: &str| inner.sees_metrics_of(tenant, name);
        let now = inner.metrics_now(&visible);
        let totals = inner.metrics.totals();
        let functions = (now.functions.into_iter())
            .map(|(name, now)| {
                let counts = totals.functions.get(&name).copied().unwrap_or_default();
                let function = FunctionMetrics {
                    invocations: counts.invocations,
                    errors: counts.errors,
                    now,
                };
                (name, function)
            })
            .collect();
        MetricsSummary {
            node: inner.dispatcher.node().to_owned(),
            step_seconds: STEP.as_secs(),
            functions,
            history: inner.metrics.history(
                crate::store::unix_millis(std::time::SystemTime::now()),
                visible,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(ms: u64) -> functions_runtime::Timing {
        functions_runtime::Timing {
            start: Duration::from_millis(ms / 2),
            run: Duration::from_millis(ms - ms / 2),
            ready: true,
        }
    }

    #[test]
    fn a_sample_counts_the_invocations_of_its_step_and_estimates_their_percentiles() {
        let metrics = Metrics::new();
        for _ in 0..99 {
            metrics.invoked(
                "a",
                Language::JavaScript,
                Via::Invocation,
                "ok",
                Some(timing(2)),
            );
        }
        metrics.invoked(
            "b",
            Language::Wasm,
            Via::Call,
            "time_limit",
            Some(timing(800)),
        );
        metrics.sample(1_000);
        metrics.invoked(
            "a",
            Language::JavaScript,
            Via::Invocation,
            "ok",
            Some(timing(2)),
        );
        let history = metrics.history(2_000, |_| true);
        assert_eq!(history.len(), 2);
        let first = &history[0];
        assert_eq!((first.at, first.invocations, first.errors), (1_000, 100, 1));
        assert_eq!(
            first.functions["b"],
            Counts {
                invocations: 1,
                errors: 1
            }
        );
        let latency = first.latency_ms.expect("percentiles");
        // 99 of 100 took 2 ms (the 1 to 2.5 ms bucket), one 800 ms (0.5 to 1 s).
        assert!((1.0..=2.5).contains(&latency.p50), "{latency:?}");
        assert!((1.0..=2.5).contains(&latency.p99), "{latency:?}");
        let current = &history[1];
        assert!(current.partial);
        assert_eq!(current.invocations, 1);
        // What one may not see is left out of the totals too.
        let only_b = metrics.history(2_000, |name| name == "b");
        assert_eq!((only_b[0].invocations, only_b[1].invocations), (1, 0));
        let p = only_b[0].latency_ms.expect("b's percentiles");
        assert!((500.0..=1000.0).contains(&p.p50), "{p:?}");
        assert!(only_b[1].latency_ms.is_none());
    }

    #[test]
    fn the_text_leaves_out_the_series_of_functions_one_may_not_see() {
        let metrics = Metrics::new();
        metrics.invoked(
            "mine",
            Language::Python,
            Via::Invocation,
            "ok",
            Some(timing(4)),
        );
        metrics.invoked("theirs", Language::Python, Via::Invocation, "ok", None);
        let now = Now {
            isolates: 3,
            wasm_instances: 0,
            python_ready: 1,
            nodes: 1,
            functions: BTreeMap::new(),
        };
        let text = metrics.text(&now, |name| name == "mine");
        assert!(text.contains("functions_host_invocations_total{function=\"mine\""));
        assert!(!text.contains("theirs"), "{text}");
        assert!(text.contains("functions_host_isolates 3"), "{text}");
        assert!(text.contains("functions_host_pool_total{function=\"mine\",result=\"hit\"} 1"));
    }
}
