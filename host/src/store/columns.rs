//! How the SQL stores (SQLite and PostgreSQL) keep a deployment and a call's outcome in
//! columns: names of enums and JSON as text, a Python function's packages encoded as one blob.
//! Each backend reads its rows into these plain values, and these turn them into the store's
//! types, so that both read a stored value the same way and refuse a corrupt one alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use anyhow::anyhow;
use functions_runtime::Executor;
use functions_runtime::Isolation;
use functions_runtime::Module;
use functions_runtime::ModuleKind;

use super::CallOutcome;
use super::CallResult;
use super::Deployment;
use super::DeploymentSummary;
use super::StoreResult;
use super::StoredRuntimeCode;
use super::StoredWasm;
use super::failure_of;
use crate::Language;

/// A text column that must hold one of an enum's names.
pub(super) fn parse_column<T>(
    value: &str,
    column: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> StoreResult<T> {
    parse(value).ok_or_else(|| anyhow!("stored {column} {value:?} is not one this host knows"))
}

/// A JSON column, which must parse.
pub(super) fn json_column<T: serde::de::DeserializeOwned>(
    value: &str,
    column: &str,
) -> StoreResult<T> {
    serde_json::from_str(value).with_context(|| format!("stored {column} is corrupt: {value:?}"))
}

/// The name a module's kind is stored as.
pub(super) fn module_kind_name(kind: ModuleKind) -> &'static str {
    match kind {
        ModuleKind::JavaScript => "javascript",
        ModuleKind::Json => "json",
    }
}

/// A module from its stored columns; `source` is absent when it is the code itself.
pub(super) fn module_of(
    kind: &str,
    code: String,
    source_map: Option<String>,
    source: Option<String>,
) -> StoreResult<Module> {
    let kind = parse_column(kind, "module kind", |kind| match kind {
        "javascript" => Some(ModuleKind::JavaScript),
        "json" => Some(ModuleKind::Json),
        _ => None,
    })?;
    let code: Arc<str> = code.into();
    Ok(Module {
        kind,
        source: source.map_or_else(|| code.clone(), Into::into),
        code,
        source_map: source_map.map(Into::into),
    })
}

/// A module's source as stored: none when it runs as written (stored once, as its code).
pub(super) fn stored_source(module: &Module) -> Option<&str> {
    (module.source != module.code).then_some(&*module.source)
}

/// The columns of a version's summary, as read.
pub(super) struct SummaryColumns {
    pub name: String,
    pub version: u64,
    pub language: String,
    pub entry: String,
    pub isolation: String,
    pub limits: String,
    pub public: bool,
    pub call_token: String,
    pub deployed_at: i64,
    pub created_at: i64,
    pub owner: Option<String>,
}

impl SummaryColumns {
    /// The summary they hold.
    pub fn parse(self) -> StoreResult<DeploymentSummary> {
        Ok(DeploymentSummary {
            language: parse_column(&self.language, "language", Language::parse)?,
            isolation: parse_column(&self.isolation, "isolation", Isolation::parse)?,
            limits: json_column(&self.limits, "limits")?,
            name: self.name,
            version: self.version,
            entry: self.entry,
            public: self.public,
            call_token: self.call_token,
            deployed_at: self.deployed_at,
            created_at: self.created_at,
            owner: self.owner,
        })
    }
}

/// A Python or C# function's code columns, as read.
pub(super) struct RuntimeCodeColumns {
    pub files: String,
    pub requirements: String,
    pub packages: Vec<u8>,
    pub snapshot: Vec<u8>,
}

/// The columns of a version besides its summary and modules, as read.
pub(super) struct CodeColumns {
    pub env: String,
    pub allow_net: String,
    pub executor: String,
    pub bindings: String,
    /// A WebAssembly function's binary and compiled artifact.
    pub wasm: Option<(Vec<u8>, Vec<u8>)>,
    pub runtime_code: Option<RuntimeCodeColumns>,
}

impl CodeColumns {
    /// The deployment of `summary` with these columns and `modules`.
    pub fn parse(
        self,
        summary: DeploymentSummary,
        modules: BTreeMap<String, Module>,
    ) -> StoreResult<Deployment> {
        let runtime_code = match self.runtime_code {
            Some(code) => Some(StoredRuntimeCode {
                files: json_column(&code.files, "files")?,
                requirements: json_column(&code.requirements, "requirements")?,
                packages: Arc::new(functions_pyodide::wheels::decode_files(&code.packages)?),
                snapshot: code.snapshot.into(),
            }),
            None => None,
        };
        Ok(Deployment {
            modules,
            env: json_column(&self.env, "env")?,
            allow_net: json_column(&self.allow_net, "allow_net")?,
            bindings: json_column(&self.bindings, "bindings")?,
            executor: parse_column(&self.executor, "executor", Executor::parse)?,
            wasm: self.wasm.map(|(binary, artifact)| StoredWasm {
                binary: binary.into(),
                artifact: artifact.into(),
            }),
            runtime_code,
            summary,
        })
    }
}

/// The columns of a call that ended, as read.
pub(super) struct OutcomeColumns {
    pub state: String,
    pub status: Option<u16>,
    pub headers: Option<String>,
    pub body: Option<Vec<u8>>,
    pub error: Option<String>,
}

impl OutcomeColumns {
    /// How call `id` ended.
    pub fn parse(self, id: &str) -> StoreResult<CallOutcome> {
        Ok(match (self.state.as_str(), self.error) {
            ("failed", Some(error)) => CallOutcome::Failed(failure_of(&error)?),
            ("finished", None) => CallOutcome::Finished(CallResult {
                status: self
                    .status
                    .ok_or_else(|| anyhow!("call {id} has no status"))?,
                headers: serde_json::from_str(self.headers.as_deref().unwrap_or("[]"))
                    .map_err(|err| anyhow!("call {id}'s stored headers: {err}"))?,
                body: self.body.unwrap_or_default(),
            }),
            (state, _) => anyhow::bail!("call {id} is in an unknown state {state:?}"),
        })
    }
}

/// The columns a call's outcome is stored in: (state, status, headers, body, error), and the
/// bytes it counts for in its function's result cache.
pub(super) fn outcome_columns(outcome: &CallOutcome) -> StoreResult<(OutcomeColumns, u64)> {
    let columns = match outcome {
        CallOutcome::Finished(result) => OutcomeColumns {
            state: "finished".to_owned(),
            status: Some(result.status),
            headers: Some(serde_json::to_string(&result.headers)?),
            body: Some(result.body.clone()),
            error: None,
        },
        CallOutcome::Failed(err) => OutcomeColumns {
            state: "failed".to_owned(),
            status: None,
            headers: None,
            body: None,
            error: Some(super::stored_failure(err)),
        },
    };
    let bytes = columns.body.as_ref().map_or(0, Vec::len)
        + columns.headers.as_ref().map_or(0, String::len)
        + columns.error.as_ref().map_or(0, String::len);
    Ok((columns, bytes as u64))
}
