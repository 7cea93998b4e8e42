//! What a deploy means: a [`Manifest`], or the body of a `PUT /api/functions/{name}` (a single
//! source file, a `.wasm` binary or a JSON manifest), checked and compiled into what a store
//! keeps.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use serde::Deserialize;
use serde::Serialize;

use functions_runtime::CompileError;

use crate::store::NewDeployment;
use crate::store::StoredRuntimeCode;
use crate::store::StoredWasm;

/// The language a function is deployed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// ES modules.
    JavaScript,
    /// TypeScript, transpiled to JavaScript at deploy.
    TypeScript,
    /// A WebAssembly guest.
    Wasm,
    /// Python, on Pyodide.
    Python,
    /// C#, compiled to .NET assemblies, on the .NET WebAssembly runtime.
    #[serde(rename = "csharp")]
    CSharp,
}

/// Each language with the names and file extensions that mean it.
const LANGUAGES: &[(Language, &[&str])] = &[
    (Language::JavaScript, &["javascript", "js", "mjs", "jsx"]),
    (Language::TypeScript, &["typescript", "ts", "tsx", "mts"]),
    (Language::Wasm, &["wasm", "webassembly"]),
    (Language::Python, &["python", "py"]),
    (Language::CSharp, &["csharp", "cs", "c#", "dll", "dotnet"]),
];

impl Language {
    /// The canonical name, as stored and shown: `javascript`, `typescript`, `wasm`, `python`,
    /// `csharp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JavaScript => "javascript",
            Self::TypeScript => "typescript",
            Self::Wasm => "wasm",
            Self::Python => "python",
            Self::CSharp => "csharp",
        }
    }

    /// The language of a canonical name.
    pub fn parse(name: &str) -> Option<Self> {
        LANGUAGES
            .iter()
            .map(|(language, _)| *language)
            .find(|language| language.as_str() == name)
    }

    /// The language a name or file extension (`ts`, `webassembly`, ...) means, in any case.
    pub fn of_alias(value: &str) -> Option<Self> {
        let value = value.to_ascii_lowercase();
        LANGUAGES
            .iter()
            .find(|(_, aliases)| aliases.contains(&value.as_str()))
            .map(|(language, _)| *language)
    }
}

/// Why a deploy was rejected (always a 400).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeployError {
    /// The request itself is wrong: a bad name, manifest, language or setting.
    #[error("{0}")]
    Invalid(String),
    /// A file does not compile, or imports what it may not.
    #[error(transparent)]
    Compile(#[from] CompileError),
}

fn bad(message: impl Into<String>) -> DeployError {
    DeployError::Invalid(message.into())
}

/// The JSON manifest form of a deploy.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `javascript`, `typescript`, `wasm`, `python` or `csharp` (default: from the entry's
    /// extension; `python` when there are `.py` files, `csharp` when there are `.dll` files).
    pub language: Option<String>,
    /// The entry file's path (default: the only file). Python: `main.py`, `main.py:hello` (the
    /// function to call) or `hello` (a function of `main.py`, or of the only `.py` file). C#:
    /// `Class.Method`, `Hello.dll:Class.Method` or `Hello.dll` (its only public static method).
    pub entry: Option<String>,
    /// Files by path: sources as text, a `.wasm` binary or a C# assembly (`.dll`) as base64.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `invocation` (default: a fresh isolate each time) or `function` (warm isolates).
    pub isolation: Option<String>,
    /// Hosts (`host` or `host:port`) the function's `fetch` may reach.
    #[serde(default)]
    pub allow_net: Vec<String>,
    /// The functions it may call, each `{"function": "<name>"}` under the binding's name (an
    /// identifier, which the handler's `env` holds it as). JavaScript, TypeScript and Python.
    #[serde(default)]
    pub bindings: BTreeMap<String, serde_json::Value>,
    /// Limits (unset ones are the defaults).
    #[serde(default)]
    pub limits: FunctionLimits,
    /// Whether invoking it at `/fn/{name}` needs no API key (default true; a server without
    /// keys lets everyone in regardless).
    pub public: Option<bool>,
    /// How a WebAssembly guest's stdout becomes the response: `command` (default) or `wagi`.
    pub executor: Option<String>,
    /// Python: packages to install (PEP 508 lines, as in `requirements.txt`, which is read
    /// when this is empty), each a pure-Python wheel from the package index pip uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<String>,
}

/// Limits a deploy may set for its function (the manifest's `limits`); unset ones are defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionLimits {
    /// CPU time per invocation, in milliseconds (default 1,000; 1 to 60,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    /// Wall-clock time per invocation, in milliseconds (default 30,000; 1 to 900,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_clock_ms: Option<u64>,
    /// Memory, in MiB: the V8 heap or a guest's linear memory (default 128; 16 to 4,096).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Invocations running at once, beyond which calls wait in a FIFO queue (default 10;
    /// 1 to 1,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
}

/// A function's concurrency when its deploy sets none.
pub const DEFAULT_CONCURRENCY: usize = 10;

impl FunctionLimits {
    /// Checks every set limit is in its range.
    pub fn validate(&self) -> Result<(), DeployError> {
        let check = |name: &str, value: Option<u64>, min: u64, max: u64| match value {
            Some(value) if !(min..=max).contains(&value) => Err(bad(format!(
                "limits.{name} must be between {min} and {max}, not {value}"
            ))),
            _ => Ok(()),
        };
        check("cpu_ms", self.cpu_ms, 1, 60_000)?;
        check("wall_clock_ms", self.wall_clock_ms, 1, 900_000)?;
        check("memory_mb", self.memory_mb, 16, 4096)?;
        check("concurrency", self.concurrency.map(|c| c as u64), 1, 1000)
    }

    /// The engine's limits for an invocation.
    pub fn runtime(&self) -> functions_runtime::Limits {
        let defaults = functions_runtime::Limits::default();
        functions_runtime::Limits {
            cpu_time: self
                .cpu_ms
                .map_or(defaults.cpu_time, std::time::Duration::from_millis),
            wall_clock: self
                .wall_clock_ms
                .map_or(defaults.wall_clock, std::time::Duration::from_millis),
            memory_bytes: self
                .memory_mb
                .map_or(defaults.memory_bytes, |mb| mb * 1024 * 1024),
        }
    }

    /// How many invocations may run at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or(DEFAULT_CONCURRENCY)
    }
}

/// What the request said besides its body.
#[derive(Clone, Debug, Default)]
pub struct DeployHints {
    /// `?lang=`
    pub lang: Option<String>,
    /// `?entry=` (a file name, also used to guess the language)
    pub entry: Option<String>,
    /// `?isolation=`
    pub isolation: Option<String>,
    /// `?executor=` (WebAssembly)
    pub executor: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
}

fn language_of_content_type(content_type: &str) -> Option<Language> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/javascript" | "text/javascript" | "application/ecmascript" => {
            Some(Language::JavaScript)
        }
        "application/typescript" | "text/typescript" | "video/mp2t" => Some(Language::TypeScript),
        "application/wasm" => Some(Language::Wasm),
        "text/x-python" | "application/x-python" => Some(Language::Python),
        _ => None,
    }
}

fn extension(path: &str) -> Option<&str> {
    path.rsplit_once('.').map(|(_, ext)| ext)
}

/// A function name: 1–63 characters of ASCII letters, digits, `-` and `_`, starting with a
/// letter or digit (safe in URLs and paths).
pub fn validate_name(name: &str) -> Result<(), DeployError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(bad(format!(
            "invalid function name {name:?}: use 1-63 letters, digits, '-' or '_', starting with a letter or digit"
        )))
    }
}

/// A file path inside a function: relative, `/`-separated, without `.` or `..` segments.
fn validate_path(path: &str) -> Result<(), DeployError> {
    let valid = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if valid {
        Ok(())
    } else {
        Err(bad(format!(
            "invalid file path {path:?}: use a relative path such as \"src/util.ts\""
        )))
    }
}

/// An `allow_net` entry: a host name or IP address (IPv6 in brackets), optionally with `:port`.
fn validate_host(entry: &str) -> Result<(), DeployError> {
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        match rest.split_once(']') {
            Some((address, port)) if address.parse::<std::net::Ipv6Addr>().is_ok() => (
                address,
                port.strip_prefix(':')
                    .or(Some(port).filter(|p| p.is_empty())),
            ),
            _ => ("", None),
        }
    } else {
        match entry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, Some("")),
        }
    };
    let host_ok = !host.is_empty()
        && (host.contains(':')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    let port_ok =
        port.is_some_and(|port| port.is_empty() || port.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(bad(format!(
            "invalid allow_net entry {entry:?}: use a host name or address, optionally with :port"
        )))
    }
}

/// Most bindings a function may have.
const MAX_BINDINGS: usize = 64;

/// Longest binding name.
const MAX_BINDING_NAME: usize = 64;

/// A manifest's `bindings` checked: binding name to the name of the function it reaches.
/// Whether that function exists (for the deployer) is the host's to check.
fn bindings_of(manifest: &Manifest) -> Result<BTreeMap<String, String>, DeployError> {
    if manifest.bindings.len() > MAX_BINDINGS {
        return Err(bad(format!(
            "a function has at most {MAX_BINDINGS} bindings, not {}",
            manifest.bindings.len()
        )));
    }
    let mut bindings = BTreeMap::new();
    for (binding, value) in &manifest.bindings {
        let identifier = binding
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && binding
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !identifier {
            return Err(bad(format!(
                "binding name {binding:?} is not an identifier (letters, digits, _; not starting with a digit)"
            )));
        }
        if binding.len() > MAX_BINDING_NAME {
            return Err(bad(format!(
                "binding name {binding:?} is longer than {MAX_BINDING_NAME} characters"
            )));
        }
        if manifest.env.contains_key(binding) {
            return Err(bad(format!(
                "{binding:?} is both an env variable and a binding"
            )));
        }
        let shape = || {
            bad(format!(
                "binding {binding:?} must be an object {{\"function\": \"<name>\"}}"
            ))
        };
        let object = value.as_object().ok_or_else(shape)?;
        if let Some(unknown) = object.keys().find(|key| *key != "function") {
            return Err(bad(format!(
                "binding {binding:?} has an unknown key {unknown:?}: it takes only \"function\""
            )));
        }
        let target = object
            .get("function")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(shape)?;
        validate_name(target).map_err(|err| bad(format!("binding {binding:?}: {err}")))?;
        bindings.insert(binding.clone(), target.to_owned());
    }
    Ok(bindings)
}

fn is_manifest(hints: &DeployHints) -> bool {
    let json = hints.content_type.as_deref().is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/json")
    });
    json || hints.lang.as_deref() == Some("manifest")
}

/// The language a deploy names (`?lang=`, the manifest's `language`, the `Content-Type`), if any.
fn named_language(
    manifest_language: Option<&str>,
    hints: &DeployHints,
) -> Result<Option<Language>, DeployError> {
    let language = |value: &str| {
        Language::of_alias(value).ok_or_else(|| {
            bad(format!(
                "unknown language {value:?}: use javascript, typescript, wasm, python or csharp"
            ))
        })
    };
    // `?lang=` is checked even when the manifest names the language itself.
    let hinted = match hints.lang.as_deref() {
        Some(value) if value != "manifest" => Some(language(value)?),
        _ => None,
    };
    match manifest_language {
        Some(value) => language(value).map(Some),
        None => Ok(hinted.or_else(|| {
            hints
                .content_type
                .as_deref()
                .and_then(language_of_content_type)
        })),
    }
}

/// Interprets a deploy body for function `name` and compiles its files: TypeScript is
/// transpiled here, once, and the result is what gets stored and run.
pub fn parse(name: &str, hints: &DeployHints, body: &[u8]) -> Result<NewDeployment, DeployError> {
    validate_name(name)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(
            "empty body: send the function's source, or a JSON manifest",
        ));
    }
    let raw_wasm = !is_manifest(hints)
        && (named_language(None, hints)? == Some(Language::Wasm)
            || hints.entry.as_deref().and_then(extension) == Some("wasm"));
    if raw_wasm {
        return wasm_deployment(
            name,
            hints.executor.as_deref(),
            None,
            BTreeMap::new(),
            body.to_vec(),
        );
    }
    let csharp = !is_manifest(hints)
        && (named_language(None, hints)? == Some(Language::CSharp)
            || matches!(
                hints.entry.as_deref().and_then(extension),
                Some("cs" | "dll")
            ));
    if csharp {
        return Err(bad(CSHARP_IS_A_MANIFEST));
    }
    let manifest = if is_manifest(hints) {
        serde_json::from_slice::<Manifest>(body)
            .map_err(|err| bad(format!("invalid manifest: {err}")))?
    } else {
        let source = std::str::from_utf8(body).map_err(|_| bad("the source is not UTF-8 text"))?;
        let entry = match (hints.entry.as_deref(), named_language(None, hints)?) {
            (Some(entry), _) => entry.to_owned(),
            (None, Some(Language::TypeScript)) => "index.ts".to_owned(),
            (None, Some(Language::Python)) => "main.py".to_owned(),
            (None, _) => "index.js".to_owned(),
        };
        // A Python entry may name a function in the file (`main.py:hello`).
        let file = entry
            .split_once(':')
            .map_or(entry.as_str(), |(file, _)| file);
        Manifest {
            entry: Some(entry.clone()),
            files: BTreeMap::from([(file.to_owned(), source.to_owned())]),
            ..Manifest::default()
        }
    };
    resolve(name, manifest, hints)
}

/// Checks a manifest for function `name` and compiles its files.
pub fn from_manifest(name: &str, manifest: Manifest) -> Result<NewDeployment, DeployError> {
    validate_name(name)?;
    resolve(name, manifest, &DeployHints::default())
}

/// A WebAssembly binary as function `name` (the `command` executor, no environment).
pub fn from_wasm(name: &str, binary: Vec<u8>) -> Result<NewDeployment, DeployError> {
    validate_name(name)?;
    wasm_deployment(name, None, None, BTreeMap::new(), binary)
}

/// Checks a manifest (with what the request said besides) and compiles its files.
fn resolve(
    name: &str,
    manifest: Manifest,
    hints: &DeployHints,
) -> Result<NewDeployment, DeployError> {
    manifest.limits.validate()?;
    let entry = match (&manifest.entry, manifest.files.len()) {
        (Some(entry), _) => entry.clone(),
        (None, 1) => manifest.files.keys().next().cloned().unwrap_or_default(),
        (None, 0) => return Err(bad("the manifest has no files")),
        (None, _) if manifest.files.contains_key("main.py") => "main.py".to_owned(),
        // A C# function's entry is its only assembly's only public static method.
        (None, _) if manifest.files.keys().any(|path| path.ends_with(".dll")) => String::new(),
        (None, _) => {
            return Err(bad(
                "the manifest has several files: name the entry with \"entry\"",
            ));
        }
    };
    // The entry's extension says the language; an entry with none (`hello`, a function) is
    // Python when the files are.
    let entry_file = entry
        .split_once(':')
        .map_or(entry.as_str(), |(file, _)| file);
    let language = match named_language(manifest.language.as_deref(), hints)? {
        Some(language) => language,
        None => match extension(entry_file).and_then(Language::of_alias) {
            Some(language) => language,
            None if manifest.files.keys().any(|path| path.ends_with(".py")) => Language::Python,
            None if manifest.files.keys().any(|path| path.ends_with(".dll")) => Language::CSharp,
            None => Language::JavaScript,
        },
    };
    match language {
        Language::Python => return python_deployment(name, manifest, hints, &entry),
        Language::CSharp => return csharp_deployment(name, manifest, hints, &entry),
        _ => {}
    }
    validate_path(&entry).map_err(|_| bad(format!("invalid entry path {entry:?}")))?;
    for path in manifest.files.keys() {
        validate_path(path)?;
    }
    let source = manifest.files.get(&entry).ok_or_else(|| {
        bad(format!(
            "the entry {entry:?} is not among the manifest's files"
        ))
    })?;
    if source.trim().is_empty() {
        return Err(bad(format!("the entry {entry:?} is empty")));
    }
    if !manifest.requirements.is_empty() {
        return Err(bad(
            "\"requirements\" apply to Python functions: bundle JavaScript packages into the function",
        ));
    }
    if language == Language::Wasm {
        if manifest.files.len() > 1 {
            return Err(bad("a WebAssembly function is one .wasm file"));
        }
        if !manifest.bindings.is_empty() {
            return Err(bad(
                "bindings apply to JavaScript, TypeScript and Python functions: a WebAssembly guest cannot call other functions (it can be called through one)",
            ));
        }
        if !manifest.allow_net.is_empty() {
            return Err(bad(
                "\"allow_net\" applies to JavaScript functions: WebAssembly guests get no network",
            ));
        }
        if manifest.isolation.is_some() {
            return Err(bad(
                "\"isolation\" applies to JavaScript functions: every WebAssembly call is a new instance",
            ));
        }
        let binary = BASE64.decode(source.trim()).map_err(|err| {
            bad(format!(
                "the WebAssembly file {entry:?} is not base64 (a manifest carries binaries as base64): {err}"
            ))
        })?;
        let executor = manifest.executor.as_deref().or(hints.executor.as_deref());
        let mut deployment = wasm_deployment(name, executor, Some(entry), manifest.env, binary)?;
        deployment.limits = manifest.limits;
        deployment.public = manifest.public.unwrap_or(true);
        return Ok(deployment);
    }
    if manifest.executor.is_some() || hints.executor.is_some() {
        return Err(bad("\"executor\" applies to WebAssembly functions only"));
    }

    let isolation = isolation_of(&manifest, hints)?;
    for host in &manifest.allow_net {
        validate_host(host)?;
    }
    let bindings = bindings_of(&manifest)?;
    let modules = functions_runtime::compile_files(name, &entry, &manifest.files)?;
    Ok(NewDeployment {
        name: name.to_owned(),
        language,
        entry,
        modules,
        env: manifest.env,
        isolation,
        allow_net: manifest.allow_net,
        bindings,
        wasm: None,
        runtime_code: None,
        executor: functions_runtime::Executor::Command,
        limits: manifest.limits,
        public: manifest.public.unwrap_or(true),
        owner: None,
    })
}

/// How a deploy's invocations share isolates (the manifest's, or `?isolation=`).
fn isolation_of(
    manifest: &Manifest,
    hints: &DeployHints,
) -> Result<functions_runtime::Isolation, DeployError> {
    let parse = |isolation: &str| {
        functions_runtime::Isolation::parse(isolation).ok_or_else(|| {
            bad(format!(
                "invalid isolation {isolation:?}: use \"invocation\" or \"function\""
            ))
        })
    };
    // `?isolation=` is checked even when the manifest sets its own.
    let hinted = hints.isolation.as_deref().map(parse).transpose()?;
    match manifest.isolation.as_deref() {
        Some(isolation) => parse(isolation),
        None => Ok(hinted.unwrap_or(parse("invocation")?)),
    }
}

/// Whether `name` is a name in Python or C#: a letter or `_`, then letters, digits or `_`.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// A Python deploy: its files (`.py` modules and text files they read) and entry (`main.py`,
/// `main.py:hello`, or `hello`); its snapshot is still to be made.
fn python_deployment(
    name: &str,
    manifest: Manifest,
    hints: &DeployHints,
    entry: &str,
) -> Result<NewDeployment, DeployError> {
    for path in manifest.files.keys() {
        validate_path(path)?;
    }
    let (file, _) =
        crate::python::split_entry(entry, manifest.files.keys()).map_err(DeployError::Invalid)?;
    validate_path(&file).map_err(|_| bad(format!("invalid entry path {file:?}")))?;
    if !file.ends_with(".py") {
        return Err(bad(format!(
            "the entry {file:?} of a Python function is a .py file"
        )));
    }
    if !manifest.files.contains_key(&file) {
        return Err(bad(format!(
            "the entry {file:?} is not among the manifest's files"
        )));
    }
    if manifest.executor.is_some() || hints.executor.is_some() {
        return Err(bad("\"executor\" applies to WebAssembly functions only"));
    }
    let isolation = isolation_of(&manifest, hints)?;
    for host in &manifest.allow_net {
        validate_host(host)?;
    }
    let bindings = bindings_of(&manifest)?;
    let requirements = if manifest.requirements.is_empty() {
        manifest
            .files
            .get("requirements.txt")
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    } else {
        manifest.requirements
    };
    Ok(NewDeployment {
        name: name.to_owned(),
        language: Language::Python,
        entry: entry.to_owned(),
        modules: BTreeMap::new(),
        env: manifest.env,
        isolation,
        allow_net: manifest.allow_net,
        bindings,
        wasm: None,
        runtime_code: Some(StoredRuntimeCode {
            files: manifest.files,
            requirements,
            // Resolved, and the snapshot made, by the host (both need more than the manifest).
            packages: Arc::default(),
            snapshot: Arc::from([]),
        }),
        executor: functions_runtime::Executor::Command,
        limits: manifest.limits,
        public: manifest.public.unwrap_or(true),
        owner: None,
    })
}

/// What a C# deploy must be, and how to make one.
const CSHARP_IS_A_MANIFEST: &str = "a C# function is deployed compiled: a JSON manifest of its \
     assemblies (.dll, base64) with the dispatcher's (FunctionsHost.Dispatcher.dll); \
     `functions-host deploy Hello.cs` compiles the source and the dispatcher (with dotnet or mcs) \
     and sends them";

/// A C# deploy: its compiled assemblies (`.dll`, base64), the dispatcher's among them, and any
/// sources kept beside them; the entry is normalized to `ASSEMBLY.dll` or
/// `ASSEMBLY.dll:Class.Method`. Its snapshot is still to be made.
fn csharp_deployment(
    name: &str,
    manifest: Manifest,
    hints: &DeployHints,
    entry: &str,
) -> Result<NewDeployment, DeployError> {
    if manifest.executor.is_some() || hints.executor.is_some() {
        return Err(bad("\"executor\" applies to WebAssembly functions only"));
    }
    if !manifest.bindings.is_empty() {
        return Err(bad(
            "bindings apply to JavaScript, TypeScript and Python functions: a C# function cannot call other functions (it can be called through one)",
        ));
    }
    if !manifest.allow_net.is_empty() {
        return Err(bad(
            "\"allow_net\" applies to JavaScript and Python functions: C# functions get no network",
        ));
    }
    if !manifest.requirements.is_empty() {
        return Err(bad(
            "\"requirements\" apply to Python functions: deploy a C# function's libraries as assemblies",
        ));
    }
    let isolation = isolation_of(&manifest, hints)?;
    let mut assemblies = BTreeMap::new();
    let mut files = BTreeMap::new();
    for (path, content) in manifest.files {
        validate_path(&path)?;
        let assembly = path.to_ascii_lowercase().ends_with(".dll");
        if assembly && (path.contains('/') || !path.ends_with(".dll")) {
            return Err(bad(format!(
                "the assembly {path:?} must be a file of the top directory named NAME.dll"
            )));
        }
        if assembly {
            let bytes = BASE64.decode(content.trim()).map_err(|err| {
                bad(format!(
                    "the assembly {path:?} is not base64 (a manifest carries binaries as base64): {err}"
                ))
            })?;
            // A PE file starts with "MZ".
            if !bytes.starts_with(b"MZ") {
                return Err(bad(format!(
                    "{path:?} is not a .NET assembly (a compiled .dll)"
                )));
            }
            assemblies.insert(path, bytes);
        } else {
            files.insert(path, content);
        }
    }
    if assemblies.is_empty() {
        return Err(bad(CSHARP_IS_A_MANIFEST));
    }
    let dispatcher = crate::dotnet::dispatcher_file();
    if !assemblies.contains_key(&dispatcher) {
        return Err(bad(format!(
            "the deploy lacks the dispatcher's assembly {dispatcher}, which binds the event to \
             the entry's parameters: `functions-host deploy` compiles it beside the function"
        )));
    }
    let (file, method) =
        crate::dotnet::split_entry(entry, assemblies.keys()).map_err(DeployError::Invalid)?;
    if !assemblies.contains_key(&file) {
        return Err(bad(format!(
            "the entry's assembly {file:?} is not among the manifest's files"
        )));
    }
    let entry = match method {
        Some(method) => format!("{file}:{method}"),
        None => file,
    };
    Ok(NewDeployment {
        name: name.to_owned(),
        language: Language::CSharp,
        entry,
        modules: BTreeMap::new(),
        env: manifest.env,
        isolation,
        allow_net: Vec::new(),
        bindings: BTreeMap::new(),
        wasm: None,
        runtime_code: Some(StoredRuntimeCode {
            files,
            requirements: Vec::new(),
            packages: Arc::new(assemblies),
            // Made by the host (it needs the runtime).
            snapshot: Arc::from([]),
        }),
        executor: functions_runtime::Executor::Command,
        limits: manifest.limits,
        public: manifest.public.unwrap_or(true),
        owner: None,
    })
}

/// A WebAssembly deploy, its binary still to be compiled (its artifact is empty until then).
fn wasm_deployment(
    name: &str,
    executor: Option<&str>,
    entry: Option<String>,
    env: BTreeMap<String, String>,
    binary: Vec<u8>,
) -> Result<NewDeployment, DeployError> {
    let executor = executor.unwrap_or("command");
    let executor = functions_runtime::Executor::parse(executor).ok_or_else(|| {
        bad(format!(
            "invalid executor {executor:?}: use \"command\" or \"wagi\""
        ))
    })?;
    if functions_runtime::WasmKind::of(&binary).is_none() {
        return Err(bad(
            "not a WebAssembly binary (it does not start with \\0asm): send the compiled .wasm",
        ));
    }
    Ok(NewDeployment {
        name: name.to_owned(),
        language: Language::Wasm,
        entry: entry.unwrap_or_else(|| "main.wasm".to_owned()),
        modules: BTreeMap::new(),
        env,
        isolation: functions_runtime::Isolation::Invocation,
        allow_net: Vec::new(),
        bindings: BTreeMap::new(),
        wasm: Some(StoredWasm {
            binary: binary.into(),
            artifact: Arc::from([]),
        }),
        runtime_code: None,
        executor,
        limits: FunctionLimits::default(),
        public: true,
        owner: None,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn limits_are_checked_and_default() {
        let deploy = |limits: &str| {
            let body =
                format!(r#"{{"files":{{"a.js":"export default () => 1"}},"limits":{limits}}}"#);
            let hints = DeployHints {
                content_type: Some("application/json".into()),
                ..DeployHints::default()
            };
            parse("f", &hints, body.as_bytes())
        };
        let d = deploy(r#"{"cpu_ms":250,"memory_mb":64,"concurrency":4}"#).unwrap();
        let limits = d.limits.runtime();
        assert_eq!(limits.cpu_time, std::time::Duration::from_millis(250));
        assert_eq!(limits.memory_bytes, 64 * 1024 * 1024);
        assert_eq!(
            limits.wall_clock,
            functions_runtime::Limits::default().wall_clock
        );
        assert_eq!(d.limits.concurrency(), 4);
        assert_eq!(
            deploy("{}").unwrap().limits.concurrency(),
            DEFAULT_CONCURRENCY
        );
        for (limits, message) in [
            (
                r#"{"cpu_ms":0}"#,
                "limits.cpu_ms must be between 1 and 60000, not 0",
            ),
            (
                r#"{"concurrency":5000}"#,
                "limits.concurrency must be between",
            ),
            (r#"{"memory_mb":1}"#, "limits.memory_mb must be between"),
            (r#"{"cpu":1}"#, "unknown field `cpu`"),
            (r#"{"cpu_ms":"fast"}"#, "invalid type"),
        ] {
            let err = deploy(limits).unwrap_err().to_string();
            assert!(err.contains(message), "{limits}: {err}");
        }
    }

    #[test]
    fn names_are_validated() {
        for good in ["hello", "a", "my-fn_2", &"x".repeat(63)] {
            validate_name(good).unwrap();
        }
        for bad_name in ["", "../x", "a/b", "-a", "héllo", &"x".repeat(64), "a b"] {
            assert!(validate_name(bad_name).is_err(), "{bad_name:?}");
        }
    }

    #[test]
    fn a_plain_body_is_javascript_unless_told_otherwise() {
        let d = parse("f", &DeployHints::default(), b"export default () => 1").unwrap();
        assert_eq!(
            (d.language.as_str(), d.entry.as_str()),
            ("javascript", "index.js")
        );
        let hints = DeployHints {
            lang: Some("ts".into()),
            ..DeployHints::default()
        };
        let d = parse("f", &hints, b"export default (e: unknown) => e").unwrap();
        assert_eq!(
            (d.language.as_str(), d.entry.as_str()),
            ("typescript", "index.ts")
        );
        assert!(!d.modules["index.ts"].code.contains("unknown"));
        let hints = DeployHints {
            lang: Some("wasm".into()),
            ..DeployHints::default()
        };
        assert!(
            parse("f", &hints, b"x")
                .unwrap_err()
                .to_string()
                .contains("not a WebAssembly binary")
        );
        let d = parse("f", &hints, b"\0asm\x01\0\0\0").unwrap();
        assert_eq!(
            (d.language.as_str(), d.executor.as_str()),
            ("wasm", "command")
        );
        assert_eq!(&*d.wasm.unwrap().binary, b"\0asm\x01\0\0\0");
        let hints = DeployHints {
            content_type: Some("application/wasm".into()),
            executor: Some("cgi".into()),
            ..DeployHints::default()
        };
        assert!(
            parse("f", &hints, b"\0asm\x01\0\0\0")
                .unwrap_err()
                .to_string()
                .contains("invalid executor")
        );
        let hints = DeployHints {
            lang: Some("cobol".into()),
            ..DeployHints::default()
        };
        assert!(
            parse("f", &hints, b"x")
                .unwrap_err()
                .to_string()
                .contains("unknown language")
        );
        let hints = DeployHints {
            entry: Some("main.py:hello".into()),
            ..DeployHints::default()
        };
        let manifest = DeployHints {
            content_type: Some("application/json".into()),
            ..DeployHints::default()
        };
        let d = parse(
            "f",
            &manifest,
            br#"{"entry":"hello","files":{"main.py":"def hello(): pass","data.json":"{}"}}"#,
        )
        .unwrap();
        assert_eq!(d.language, Language::Python);
        let d = parse("f", &hints, b"def hello(): pass").unwrap();
        assert_eq!(
            (d.language, d.entry.as_str()),
            (Language::Python, "main.py:hello")
        );
        assert!(d.runtime_code.unwrap().files.contains_key("main.py"));
    }

    #[test]
    fn manifests_carry_env_and_isolation() {
        let hints = DeployHints {
            content_type: Some("application/json".into()),
            ..DeployHints::default()
        };
        let body = br#"{"language":"javascript","entry":"main.js","files":{"main.js":"export default () => 1"},
      "env":{"A":"1"},"isolation":"function"}"#;
        let d = parse("f", &hints, body).unwrap();
        assert_eq!(
            (d.entry.as_str(), d.isolation.as_str()),
            ("main.js", "function")
        );
        assert_eq!(d.env.get("A").map(String::as_str), Some("1"));
        let body = br#"{"entry":"src/main.ts","files":{"src/main.ts":"import d from './d.json' with {type:'json'}; export default () => d",
      "src/d.json":"{}"},"allow_net":["api.example.com","localhost:8080","[::1]:80","10.0.0.1"]}"#;
        let d = parse("f", &hints, body).unwrap();
        assert_eq!(d.language, Language::TypeScript);
        assert_eq!(d.modules.len(), 2);
        assert_eq!(d.allow_net.len(), 4);
        for (body, expected) in [
            (&b"{"[..], "invalid manifest"),
            (b"[]", "invalid manifest"),
            (br#"{"files":{}}"#, "no files"),
            (br#"{"entry":"x.js","files":{"y.js":"1"}}"#, "not among"),
            (
                br#"{"files":{"a.js":"1"},"isolation":"thread"}"#,
                "invalid isolation",
            ),
            (br#"{"files":{"a.js":"1"},"surprise":1}"#, "unknown field"),
            (
                br#"{"entry":"a.js","files":{"a.js":"1","../b.js":"2"}}"#,
                "invalid file path",
            ),
            (
                br#"{"files":{"a.js":"1"},"allow_net":["http://x"]}"#,
                "invalid allow_net",
            ),
            (br#"{"files":{"a.ts":"let x: = 1"}}"#, "SyntaxError"),
            (
                br#"{"language":"wasm","files":{"a.wasm":"AGFzbQEAAAA="},"allow_net":["x.com"]}"#,
                "WebAssembly guests get no network",
            ),
            (
                br#"{"language":"wasm","files":{"a.wasm":"AGFzbQEAAAA="},"isolation":"function"}"#,
                "every WebAssembly call is a new instance",
            ),
            (
                br#"{"entry":"a.ts","files":{"a.ts":"1","notes.txt":"hi"}}"#,
                "not a module",
            ),
            // A JavaScript function's entry decides, whatever other files it has.
            (
                br#"{"entry":"a.js","files":{"a.js":"1","tool.py":"x = 1"}}"#,
                "not a module",
            ),
            (b"  \n", "empty body"),
        ] {
            let err = parse("f", &hints, body).unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "{err} does not contain {expected}"
            );
        }
    }

    #[test]
    fn bindings_are_checked_and_carried() {
        let hints = DeployHints {
            content_type: Some("application/json".into()),
            ..DeployHints::default()
        };
        let deploy = |files: &str, extra: &str| {
            let body = format!(r#"{{"files":{files}{extra}}}"#);
            parse("caller", &hints, body.as_bytes())
        };
        let js = r#"{"index.js":"export default () => 1"}"#;
        let python = r#"{"main.py":"def handler(event):\n    return 1\n"}"#;
        let expected = BTreeMap::from([
            ("MATH".to_owned(), "math".to_owned()),
            ("_db2".to_owned(), "store-v2".to_owned()),
        ]);
        let bindings = r#","bindings":{"MATH":{"function":"math"},"_db2":{"function":"store-v2"}}"#;
        for files in [js, python] {
            assert_eq!(
                deploy(files, bindings).unwrap().bindings,
                expected,
                "{files}"
            );
            assert!(deploy(files, "").unwrap().bindings.is_empty());
        }
        let ts = r#"{"index.ts":"export default (): number => 1"}"#;
        assert_eq!(deploy(ts, bindings).unwrap().bindings, expected);

        let long = "B".repeat(65);
        let many: Vec<String> = (0..65)
            .map(|i| format!(r#""B{i}":{{"function":"f"}}"#))
            .collect();
        let many = format!(r#","bindings":{{{}}}"#, many.join(","));
        let long_name = format!(r#","bindings":{{"{long}":{{"function":"f"}}}}"#);
        for (extra, message) in [
            (
                r#","bindings":{"1x":{"function":"math"}}"#,
                r#"binding name "1x" is not an identifier (letters, digits, _; not starting with a digit)"#,
            ),
            (
                r#","bindings":{"a-b":{"function":"math"}}"#,
                r#"binding name "a-b" is not an identifier"#,
            ),
            (
                r#","bindings":{"":{"function":"math"}}"#,
                r#"binding name "" is not an identifier"#,
            ),
            (long_name.as_str(), "is longer than 64 characters"),
            (
                r#","bindings":{"MATH":"math"}"#,
                r#"binding "MATH" must be an object {"function": "<name>"}"#,
            ),
            (
                r#","bindings":{"MATH":{}}"#,
                r#"binding "MATH" must be an object {"function": "<name>"}"#,
            ),
            (
                r#","bindings":{"MATH":{"function":7}}"#,
                r#"binding "MATH" must be an object {"function": "<name>"}"#,
            ),
            (
                r#","bindings":{"MATH":{"function":"math","service":"x"}}"#,
                r#"binding "MATH" has an unknown key "service": it takes only "function""#,
            ),
            (
                r#","bindings":{"MATH":{"function":"../math"}}"#,
                r#"binding "MATH": invalid function name "../math""#,
            ),
            (
                r#","env":{"MATH":"1"},"bindings":{"MATH":{"function":"math"}}"#,
                r#""MATH" is both an env variable and a binding"#,
            ),
            (many.as_str(), "a function has at most 64 bindings, not 65"),
        ] {
            for files in [js, python] {
                let err = deploy(files, extra).unwrap_err().to_string();
                assert!(err.contains(message), "{extra}: {err}");
            }
        }
        // 64 is allowed.
        let most: Vec<String> = (0..64)
            .map(|i| format!(r#""B{i}":{{"function":"f"}}"#))
            .collect();
        let most = format!(r#","bindings":{{{}}}"#, most.join(","));
        assert_eq!(deploy(js, &most).unwrap().bindings.len(), MAX_BINDINGS);
        // A WebAssembly guest cannot call other functions.
        let err = parse(
            "f",
            &hints,
            br#"{"language":"wasm","files":{"a.wasm":"AGFzbQEAAAA="},"bindings":{"MATH":{"function":"math"}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "bindings apply to JavaScript, TypeScript and Python functions: a WebAssembly guest \
             cannot call other functions (it can be called through one)"
        );
    }

    /// A JSON value of any kind, small, with file maps among the objects.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i32>().prop_map(serde_json::Value::from),
            "[ -~]{0,12}".prop_map(serde_json::Value::from),
            prop_oneof![
                "main.js",
                "a.ts",
                "x.wasm",
                "../up.js",
                "AGFzbQEAAAA=",
                "export default () => 1"
            ]
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    prop_oneof!["main.js", "a.ts", "x.wasm", "../up.js", "", "[ -~]{0,6}"],
                    inner,
                    0..4
                )
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any body, under any hints, is a deployment or an error, never a panic.
        #[test]
        fn any_body_deploys_or_is_refused(
            body in proptest::collection::vec(any::<u8>(), 0..200),
            content_type in proptest::option::of(prop_oneof![
                "application/json", "application/wasm", "text/plain", "application/typescript"
            ]),
            lang in proptest::option::of(prop_oneof!["javascript", "ts", "wasm", "python", "x"]),
        ) {
            let hints = DeployHints {
                lang: lang.clone(),
                content_type: content_type.clone(),
                ..DeployHints::default()
            };
            let _ = parse("f", &hints, &body);
        }

        /// Any manifest-shaped JSON is a deployment whose entry is among its files, or an error.
        #[test]
        fn any_manifest_deploys_or_is_refused(
            members in proptest::collection::btree_map(
                prop_oneof![
                    "language", "entry", "files", "env", "allow_net", "isolation", "executor",
                    "limits", "bindings", "public", "[a-z]{1,6}"
                ],
                json_value(),
                0..6
            ),
        ) {
            let manifest = serde_json::Value::Object(members.into_iter().collect());
            let hints = DeployHints {
                content_type: Some("application/json".into()),
                ..DeployHints::default()
            };
            if let Ok(d) = parse("f", &hints, manifest.to_string().as_bytes()) {
                prop_assert!(
                    d.wasm.is_some() || d.runtime_code.is_some() || d.modules.contains_key(&d.entry),
                    "{manifest}"
                );
            }
        }
    }
}
