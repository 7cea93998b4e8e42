//! Where a host gets the language runtimes compiled to WebAssembly that Python and C#
//! functions run on (Pyodide, .NET): a local copy, or the npm package downloaded on first use
//! into a cache.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use functions_runtime::MemorySnapshot;

use crate::Error;

pub use functions_npm::Progress as DownloadProgress;

/// A language runtime the host fetches the first time a function needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LanguageRuntime {
    /// Pyodide, for Python functions.
    Pyodide,
    /// The .NET WebAssembly runtime, for C# functions.
    Dotnet,
}

impl LanguageRuntime {
    /// The environment variable naming a local copy of it (`--pyodide DIR`,
    /// `--dotnet-runtime DIR`).
    pub fn variable(self) -> &'static str {
        match self {
            Self::Pyodide => "FUNCTIONS_HOST_PYODIDE",
            Self::Dotnet => "FUNCTIONS_HOST_DOTNET_RUNTIME",
        }
    }

    /// The directory of its cache, under a host's data directory or the user's cache.
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Pyodide => "pyodide",
            Self::Dotnet => "dotnet",
        }
    }
}

/// Where a host gets a language runtime, the first time a function needs it.
#[derive(Clone)]
pub struct RuntimeSetup {
    /// A directory holding the runtime's files (an unpacked npm package), used as it is;
    /// `None` downloads the npm package into `cache` (once).
    pub local: Option<PathBuf>,
    /// Where the downloaded package and the snapshots made from it are kept.
    pub cache: PathBuf,
    /// The npm registry to download from.
    pub registry: String,
    /// Told how a download is coming along.
    pub progress: Option<Arc<dyn Fn(DownloadProgress) + Send + Sync>>,
}

impl std::fmt::Debug for RuntimeSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeSetup")
            .field("local", &self.local)
            .field("cache", &self.cache)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl RuntimeSetup {
    /// [`RuntimeSetup::from_env`], keeping the runtime in the user's cache directory
    /// (`functions-host/<runtime>` in `$XDG_CACHE_HOME`, else `~/.cache`): what a host without
    /// a SQLite directory uses.
    pub fn for_user(runtime: LanguageRuntime) -> Self {
        Self::from_env(runtime, user_cache_dir().join(runtime.dir_name()))
    }

    /// The runtime from the directory its environment variable names
    /// ([`LanguageRuntime::variable`]) when it is set, otherwise downloaded from the registry
    /// npm would use (`npm_config_registry`) into `cache`.
    pub fn from_env(runtime: LanguageRuntime, cache: impl Into<PathBuf>) -> Self {
        Self {
            local: std::env::var_os(runtime.variable())
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from),
            cache: cache.into(),
            registry: functions_npm::registry_from_env(functions_npm::DEFAULT_REGISTRY),
            progress: None,
        }
    }

    /// Tells `progress` (if any) how a download is coming along.
    pub(crate) fn tell(&self) -> impl FnMut(DownloadProgress) + use<> {
        let progress = self.progress.clone();
        move |at| {
            if let Some(progress) = &progress {
                progress(at);
            }
        }
    }
}

/// `functions-host` in the user's cache directory (`$XDG_CACHE_HOME`, else `~/.cache`, else
/// the temporary directory).
pub fn user_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("functions-host")
}

/// Deploys that load code into a language runtime and snapshot it at once; more wait their
/// turn (each takes seconds of CPU and hundreds of MiB).
const DEPLOYS_AT_ONCE: usize = 2;

/// A language runtime made ready (read or downloaded, a baseline made) the first time a
/// function needs it, then kept; and the turns of the deploys that use it.
pub(crate) struct OnFirstUse<T> {
    pub setup: RuntimeSetup,
    ready: tokio::sync::Mutex<Option<T>>,
    deploys: tokio::sync::Semaphore,
}

impl<T: Clone> OnFirstUse<T> {
    pub fn new(setup: RuntimeSetup) -> Self {
        Self {
            setup,
            ready: tokio::sync::Mutex::new(None),
            deploys: tokio::sync::Semaphore::new(DEPLOYS_AT_ONCE),
        }
    }

    /// Waits for a deploy's turn (see [`DEPLOYS_AT_ONCE`]); it lasts until dropped.
    pub async fn deploy_turn(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.deploys
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    /// What `make` made of the setup the first time, then kept. A failure is not kept: the next
    /// call tries again.
    pub async fn get_or_make<F, E>(&self, make: impl FnOnce(RuntimeSetup) -> F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let mut ready = self.ready.lock().await;
        if let Some(ready) = &*ready {
            return Ok(ready.clone());
        }
        let made = make(self.setup.clone()).await?;
        *ready = Some(made.clone());
        Ok(made)
    }
}

/// The baseline snapshot kept in `cache` as `file`, if one is there that `fits`; otherwise the
/// one `make` makes (seconds), then kept there for the next process.
pub(crate) async fn kept_baseline(
    cache: &Path,
    file: &str,
    fits: impl Fn(&MemorySnapshot) -> bool,
    make: impl Future<Output = Result<MemorySnapshot, Error>>,
) -> Result<Arc<MemorySnapshot>, Error> {
    let path = cache.join(file);
    let cached = tokio::fs::read(&path)
        .await
        .ok()
        .and_then(|bytes| MemorySnapshot::from_bytes(&bytes).ok().filter(&fits));
    if let Some(snapshot) = cached {
        return Ok(Arc::new(snapshot));
    }
    let snapshot = make.await?;
    // Written beside its place, then moved there: another process never reads half of it.
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let kept = async {
        tokio::fs::create_dir_all(cache).await?;
        tokio::fs::write(&partial, snapshot.to_bytes()).await?;
        tokio::fs::rename(&partial, &path).await
    };
    if let Err(err) = kept.await {
        eprintln!(
            "functions-host: the baseline snapshot {file} could not be kept in {}: {err}",
            cache.display()
        );
    }
    Ok(Arc::new(snapshot))
}
