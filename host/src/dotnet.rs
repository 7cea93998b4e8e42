//! C# in the host: the .NET WebAssembly runtime (read or downloaded on first use), and what a
//! C# deploy stores: its assemblies, entry and memory snapshot.

use std::path::Path;
use std::sync::Arc;

use sha2::Digest as _;

use functions_runtime::CompileError;
use functions_runtime::DISPATCHER_ASSEMBLY;
use functions_runtime::DotnetBuild;
use functions_runtime::DotnetCode;
use functions_runtime::Engine;
use functions_runtime::Function;
use functions_runtime::InvokeError;
use functions_runtime::MemorySnapshot;
use functions_runtime::Settings;

use crate::Error;
use crate::ErrorKind;
use crate::runtime_setup::OnFirstUse;
use crate::runtime_setup::RuntimeSetup;
use crate::runtime_setup::kept_baseline;
use crate::store::StoredRuntimeCode;

/// A .NET runtime build ready to run functions, and the baseline snapshots made of it lately:
/// one per dispatcher assembly (each compiler, and each run of mcs, makes its own of the same
/// source), by its SHA-256.
#[derive(Clone)]
pub(crate) struct Ready {
    pub build: Arc<DotnetBuild>,
    baselines: Arc<std::sync::Mutex<Vec<Baseline>>>,
}

/// A baseline snapshot and the SHA-256 of the dispatcher it holds.
type Baseline = (String, Arc<MemorySnapshot>);

/// Baselines kept in memory, and in the cache directory, at most: the dispatcher comes with
/// each deploy, so how many there are is up to the deployers.
const MAX_BASELINES: usize = 4;

impl Ready {
    /// The baseline snapshot of the runtime with `dispatcher` (the assembly a deploy brought):
    /// from memory or the cache directory, or made (a second) and kept in both, the least
    /// recently used going past [`MAX_BASELINES`].
    pub async fn baseline(
        &self,
        engine: &Engine,
        cache: &Path,
        dispatcher: &[u8],
    ) -> Result<Arc<MemorySnapshot>, Error> {
        let key = functions_npm::hex(&sha2::Sha256::digest(dispatcher));
        if let Some(baseline) = self.recall(&key) {
            return Ok(baseline);
        }
        // Made without holding the others: a dispatcher that takes long delays its deploy alone.
        let tag = self.build.snapshot_tag();
        let file = format!("baseline-{tag}-{}.snapshot", &key[..16]);
        let code = DotnetCode::baseline(self.build.clone(), dispatcher.to_vec());
        let runtime = Function::dotnet("dotnet-baseline", 1, code, Settings::default());
        let make = async {
            engine
                .snapshot_dotnet(&runtime)
                .await
                .map_err(|err| match err {
                    InvokeError::Threw { .. } => Error::compile("dotnet-baseline", load_error(err)),
                    other => Error::internal(format!("starting the .NET runtime failed: {other}")),
                })
        };
        let fits = |snapshot: &MemorySnapshot| snapshot.tag() == tag;
        let baseline = kept_baseline(cache, &file, fits, make).await?;
        let mut baselines = self.baselines.lock().unwrap_or_else(|p| p.into_inner());
        baselines.retain(|(kept, _)| *kept != key);
        baselines.push((key, baseline.clone()));
        if baselines.len() > MAX_BASELINES {
            baselines.remove(0);
        }
        drop(baselines);
        prune_baselines(cache, &tag);
        Ok(baseline)
    }

    /// The baseline of dispatcher `key`, if it is kept, made the most recently used.
    fn recall(&self, key: &str) -> Option<Arc<MemorySnapshot>> {
        let mut baselines = self.baselines.lock().unwrap_or_else(|p| p.into_inner());
        let at = baselines.iter().position(|(kept, _)| kept == key)?;
        let entry = baselines.remove(at);
        let baseline = entry.1.clone();
        baselines.push(entry);
        Some(baseline)
    }
}

/// Removes the oldest baseline files of `tag` in `cache` past [`MAX_BASELINES`], and those of
/// other builds and hosts.
fn prune_baselines(cache: &Path, tag: &str) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    let mut ours = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("baseline-") && name.ends_with(".snapshot")) {
            continue;
        }
        if !name.starts_with(&format!("baseline-{tag}-")) {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        let used = entry.metadata().and_then(|m| m.modified()).ok();
        ours.push((used, entry.path()));
    }
    ours.sort();
    let extra = ours.len().saturating_sub(MAX_BASELINES);
    for (_, path) in ours.into_iter().take(extra) {
        let _ = std::fs::remove_file(path);
    }
}

/// The .NET runtime, read (or downloaded) on first use.
pub(crate) type Dotnet = OnFirstUse<Ready>;

impl Dotnet {
    /// The runtime build: read (or downloaded) the first time, then kept.
    pub async fn ready(&self) -> Result<Ready, Error> {
        self.get_or_make(|setup| async move {
            let build = tokio::task::spawn_blocking(move || load_build(&setup))
                .await
                .map_err(Error::internal)?
                .map_err(|message| Error::new(ErrorKind::Unavailable, message))?;
            Ok(Ready {
                build,
                baselines: Arc::default(),
            })
        })
        .await
    }

    /// The snapshot of a C# function whose code is `code` (its snapshot not yet made): made
    /// from the baseline of its dispatcher, its assemblies loaded and its entry bound.
    pub async fn snapshot(
        &self,
        engine: &Engine,
        ready: &Ready,
        function: &Function,
    ) -> Result<MemorySnapshot, Error> {
        let name = function.name();
        let code = function
            .dotnet_code()
            .ok_or_else(|| Error::internal("not a C# function"))?;
        let dispatcher = code
            .assemblies
            .get(&dispatcher_file())
            .ok_or_else(|| Error::bad_request(format!("{name} has no {}", dispatcher_file())))?;
        let baseline = ready
            .baseline(engine, &self.setup.cache, dispatcher)
            .await?;
        let mut from_baseline = code.clone();
        from_baseline.snapshot = Some(baseline);
        let function = Function::dotnet(
            name,
            function.version(),
            from_baseline,
            function.settings().clone(),
        );
        engine
            .snapshot_dotnet(&function)
            .await
            .map_err(|err| Error::compile(name, load_error(err)))
    }
}

/// Reads the runtime `setup` names, downloading it first if need be.
fn load_build(setup: &RuntimeSetup) -> Result<Arc<DotnetBuild>, String> {
    let runtime = match &setup.local {
        Some(dir) => functions_dotnet::Runtime::open(dir),
        // Its error says what is missing, and how to do without the registry.
        None => functions_dotnet::Runtime::cached(&setup.cache, &setup.registry, &mut setup.tell()),
    }
    .map_err(|err| format!("{err:#}"))?;
    DotnetBuild::read(&runtime).map(Arc::new)
}

/// The file name of the dispatcher's assembly, which every C# deploy carries.
pub(crate) fn dispatcher_file() -> String {
    format!("{DISPATCHER_ASSEMBLY}.dll")
}

/// The assembly a C# deploy's `entry` names and the method in it, if it names one:
/// `Hello.dll`, `Hello.dll:Greeter.Hello`, or `Greeter.Hello` (a method of the only assembly
/// besides the dispatcher's). An empty entry is that assembly's only public static method.
pub(crate) fn split_entry<'a>(
    entry: &'a str,
    files: impl Iterator<Item = &'a String>,
) -> Result<(String, Option<String>), String> {
    let (file, method) = match entry.split_once(':') {
        Some((file, method)) => (Some(file.to_owned()), Some(method.to_owned())),
        None if entry.ends_with(".dll") => (Some(entry.to_owned()), None),
        None if entry.is_empty() => (None, None),
        None => (None, Some(entry.to_owned())),
    };
    let file = match file {
        Some(file) => file,
        None => {
            let dispatcher = dispatcher_file();
            let own: Vec<&String> = files
                .filter(|path| path.ends_with(".dll") && **path != dispatcher)
                .collect();
            match own.as_slice() {
                [only] => (*only).clone(),
                [] => return Err("a C# function needs its compiled assembly (a .dll)".into()),
                _ => {
                    return Err(format!(
                        "the function has {} assemblies: name the entry's, as \
                         \"ASSEMBLY.dll:Class.Method\"",
                        own.len()
                    ));
                }
            }
        }
    };
    if file == dispatcher_file() {
        return Err(format!(
            "{file} is the dispatcher's assembly: the entry is in the function's own"
        ));
    }
    if let Some(method) = &method {
        let names: Vec<&str> = method.split('.').collect();
        if names.len() < 2 || !names.iter().all(|name| crate::deploy::is_identifier(name)) {
            return Err(format!(
                "the entry's method {method:?} is not Class.Method (or Namespace.Class.Method)"
            ));
        }
    }
    Ok((file, method))
}

/// A C# function's code, as stored, with its `entry` (see [`split_entry`]), restoring
/// `snapshot` (or booting the runtime, without one).
pub(crate) fn code(
    build: &Arc<DotnetBuild>,
    entry: &str,
    stored: &StoredRuntimeCode,
    snapshot: Option<Arc<MemorySnapshot>>,
) -> Result<DotnetCode, String> {
    let (file, method) = split_entry(entry, stored.packages.keys())?;
    let assembly = file.strip_suffix(".dll").unwrap_or(&file).to_owned();
    Ok(DotnetCode {
        build: build.clone(),
        assemblies: stored.packages.clone(),
        assembly,
        entry: method,
        snapshot,
    })
}

/// A failure to boot a deployed function's runtime, load its assemblies or bind its entry, as
/// the compile error of its deploy.
pub(crate) fn load_error(err: InvokeError) -> CompileError {
    let message = match err {
        InvokeError::Threw { message, stack } if stack.is_empty() => message,
        InvokeError::Threw { stack, .. } => stack,
        other => other.to_string(),
    };
    CompileError {
        message,
        file: String::new(),
        line: 0,
        column: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_name_an_assembly_a_method_or_both() {
        let files = ["Hello.dll".to_owned(), dispatcher_file()];
        let split = |entry| split_entry(entry, files.iter());
        assert_eq!(split(""), Ok(("Hello.dll".into(), None)));
        assert_eq!(split("Hello.dll"), Ok(("Hello.dll".into(), None)));
        assert_eq!(
            split("Greeter.Hello"),
            Ok(("Hello.dll".into(), Some("Greeter.Hello".into())))
        );
        assert_eq!(
            split("Other.dll:My.Greeter.Hello"),
            Ok(("Other.dll".into(), Some("My.Greeter.Hello".into())))
        );
        assert!(split("Hello").is_err());
        assert!(split("Greeter.Hello()").is_err());
        assert!(split("FunctionsHost.Dispatcher.dll:FunctionsHost.Dispatcher.Invoke").is_err());
        let two = ["A.dll".to_owned(), "B.dll".to_owned(), dispatcher_file()];
        assert!(split_entry("Greeter.Hello", two.iter()).is_err());
    }
}
