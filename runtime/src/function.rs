//! What the engine runs: a named, versioned JavaScript module and how it is isolated.

use std::collections::BTreeMap;
use std::sync::Arc;

use deno_core::ModuleSpecifier;

/// How invocations of a function share isolates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// Every invocation runs in a fresh isolate from the snapshot (the default): no state survives.
    #[default]
    Invocation,
    /// Sequential invocations reuse one warm isolate, as workerd does: module state persists.
    Function,
}

impl Isolation {
    /// Parses the manifest's `isolation` value: `"invocation"` or `"function"`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "invocation" => Some(Self::Invocation),
            "function" => Some(Self::Function),
            _ => None,
        }
    }

    /// The manifest spelling of this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invocation => "invocation",
            Self::Function => "function",
        }
    }
}

/// A deployable JavaScript function: an ES module whose default export is the handler.
/// Cheap to clone; one `Function` value is one immutable version.
#[derive(Clone, Debug)]
pub struct Function(Arc<FunctionInner>);

#[derive(Debug)]
pub(crate) struct FunctionInner {
    pub name: String,
    pub version: u64,
    pub specifier: ModuleSpecifier,
    pub source: Arc<str>,
    pub env: BTreeMap<String, String>,
    pub isolation: Isolation,
}

impl Function {
    /// A function named `name` whose entry module is `source` (version 1, no env, fresh isolates).
    pub fn javascript(name: &str, source: impl Into<Arc<str>>) -> Self {
        Self::new(
            name,
            1,
            "index.js",
            source.into(),
            BTreeMap::new(),
            Isolation::default(),
        )
    }

    /// A function with every field given. `entry` is the module's file name, used in stack traces
    /// as `file:///{name}/{entry}`.
    pub fn new(
        name: &str,
        version: u64,
        entry: &str,
        source: Arc<str>,
        env: BTreeMap<String, String>,
        isolation: Isolation,
    ) -> Self {
        let specifier = ModuleSpecifier::parse(&format!("file:///{name}/"))
            .and_then(|base| base.join(entry))
            .unwrap_or_else(|_| ModuleSpecifier::parse("file:///function/index.js").unwrap());
        Self(Arc::new(FunctionInner {
            name: name.to_owned(),
            version,
            specifier,
            source,
            env,
            isolation,
        }))
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The deployment version this value holds.
    pub fn version(&self) -> u64 {
        self.0.version
    }

    /// How its invocations share isolates.
    pub fn isolation(&self) -> Isolation {
        self.0.isolation
    }

    pub(crate) fn inner(&self) -> &FunctionInner {
        &self.0
    }
}
