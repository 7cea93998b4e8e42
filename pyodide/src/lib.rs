//! functions-pyodide: the Pyodide build functions-host runs Python functions on.
//!
//! Python runs on one pinned build of Pyodide, [`VERSION`], whose files the host needs as they
//! are (its memory snapshots are only valid for the build that made them). A [`Distribution`]
//! is a directory holding them, each checked against its pinned SHA-256: a local copy
//! ([`Distribution::open`], for machines that cannot reach the npm registry), or the npm
//! package downloaded on first use, checked against the integrity hash npm publishes for it,
//! and kept in a cache directory ([`Distribution::cached`]).
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! let cache = std::path::Path::new("/var/lib/functions-host/pyodide");
//! let pyodide = functions_pyodide::Distribution::cached(
//!     cache,
//!     functions_pyodide::DEFAULT_REGISTRY,
//!     &mut |progress: functions_pyodide::Progress| eprintln!("{} of {:?} bytes", progress.received, progress.total),
//! )?;
//! let wasm = pyodide.read(functions_pyodide::File::Wasm)?;
//! # Ok(()) }
//! ```

pub mod wheels;

use std::fmt;
use std::fs;
use std::io;
use std::io::Read;
use std::path::Path;
use std::path::PathBuf;

use anyhow::Context;
use anyhow::bail;
use base64::Engine;
use sha2::Digest;
use sha2::Sha256;
use sha2::Sha512;

/// The Pyodide release functions-host runs.
pub const VERSION: &str = "314.0.7";

/// Where the package is downloaded from unless the `npm_config_registry` variable (npm's own
/// setting) names another registry.
pub const DEFAULT_REGISTRY: &str = "https://registry.npmjs.org";

/// npm's integrity hash (`dist.integrity`) of the package's tarball.
const TARBALL_INTEGRITY: &str = "sha512-0YvXxEhfEdpLfb/XkM2BFAeMROq0iMUX2bzzH9pOttyMcWkwq+HbE5uyuGD82LN7y2q+SNvi/6V5JEsOlD2R1A==";

/// The most a tarball may take (the real one is 6.5 MB): past it, the download stops.
const MAX_TARBALL_BYTES: u64 = 64 * 1024 * 1024;

/// A file of the build that the host uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum File {
    /// The interpreter, compiled to WebAssembly.
    Wasm,
    /// Emscripten's JavaScript glue and Pyodide's API: the module factory.
    Glue,
    /// Python's standard library, mounted as a zip file.
    Stdlib,
    /// The packages built for this release, and their hashes.
    Lock,
}

impl File {
    /// Every file of a distribution.
    pub const ALL: [File; 4] = [File::Wasm, File::Glue, File::Stdlib, File::Lock];

    /// Its name in the package (and in a distribution's directory).
    pub fn name(self) -> &'static str {
        match self {
            File::Wasm => "pyodide.asm.wasm",
            File::Glue => "pyodide.asm.mjs",
            File::Stdlib => "python_stdlib.zip",
            File::Lock => "pyodide-lock.json",
        }
    }

    /// Its SHA-256 in this release, in hex.
    fn sha256(self) -> &'static str {
        match self {
            File::Wasm => "cc36e3cab04fdfc9a63ff13eb52eae2b911bf46c025cc7b281f394bd3de1d5e6",
            File::Glue => "f7cdc8ece80678ceb712f8e65ebe6d3a83203a180c399865f49612a051693635",
            File::Stdlib => "fa1957e5777068fc4f7437f96d860ae2fbe9c19732ba06c84e004ec16dd7dd7a",
            File::Lock => "5dc2fc119108bc148c7457dc86e7675b5c87e1cafd420b9c34c1eaef7b36c010",
        }
    }
}

impl fmt::Display for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How far a download has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes received so far.
    pub received: u64,
    /// The tarball's size, when the registry says it.
    pub total: Option<u64>,
}

/// A directory holding the files of Pyodide [`VERSION`], each checked.
#[derive(Clone, Debug)]
pub struct Distribution {
    dir: PathBuf,
}

impl Distribution {
    /// The distribution in `dir` (as unpacked from the npm package: `pyodide.asm.wasm`,
    /// `pyodide.asm.mjs`, `python_stdlib.zip`, `pyodide-lock.json`). Fails naming every file
    /// that is missing or is not this release's.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let mut problems = Vec::new();
        for file in File::ALL {
            let path = dir.join(file.name());
            match sha256_of(&path) {
                Ok(hash) if hash == file.sha256() => {}
                Ok(_) => problems.push(format!("{file} is not Pyodide {VERSION}'s")),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    problems.push(format!("{file} is missing"));
                }
                Err(err) => problems.push(format!("{file} cannot be read: {err}")),
            }
        }
        if !problems.is_empty() {
            bail!(
                "{} does not hold Pyodide {VERSION}: {}. Unpack the npm package there \
                 (npm pack pyodide@{VERSION}; tar xzf pyodide-{VERSION}.tgz; use its package/ \
                 directory)",
                dir.display(),
                problems.join(", ")
            );
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The distribution cached in `cache` (in a directory named for the release), downloaded
    /// there from the npm registry at `registry` first if it is not yet (or if the cached copy
    /// no longer checks out), with `progress` told as the tarball arrives. Nothing is cached
    /// unless the tarball matches npm's integrity hash and every file its own.
    pub fn cached(
        cache: &Path,
        registry: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> anyhow::Result<Self> {
        let dir = cache.join(format!("pyodide-{VERSION}"));
        if dir.is_dir() {
            if let Ok(cached) = Self::open(&dir) {
                return Ok(cached);
            }
            // Damaged since it was cached: it is replaced.
            fs::remove_dir_all(&dir)
                .with_context(|| format!("removing the damaged copy in {}", dir.display()))?;
        }
        let tarball = download(registry, progress)?;
        fs::create_dir_all(cache)
            .with_context(|| format!("creating the cache directory {}", cache.display()))?;
        // Unpacked beside its final place, then moved there in one step: another process
        // never sees half a distribution.
        let partial = partial_dir(cache)?;
        unpack(&tarball, partial.path())?;
        Self::open(partial.path()).context("the downloaded package")?;
        match fs::rename(partial.path(), &dir) {
            Ok(()) => {}
            // Another process cached it first: theirs is as good.
            Err(_) if dir.is_dir() => {}
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("moving the package to {}", dir.display()));
            }
        }
        Self::open(&dir)
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The contents of `file`.
    pub fn read(&self, file: File) -> io::Result<Vec<u8>> {
        fs::read(self.dir.join(file.name()))
    }
}

/// The id this build's memory snapshots carry (its interpreter's SHA-256, 64 hex digits): only
/// the build that made a snapshot restores it.
pub fn build_id() -> &'static str {
    File::Wasm.sha256()
}

/// The registry to download from: `npm_config_registry` (as npm reads it), or `default`.
pub fn registry_from_env(default: &str) -> String {
    std::env::var("npm_config_registry")
        .ok()
        .filter(|registry| !registry.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A new, empty directory in `parent`, removed when dropped (unless moved away first).
struct PartialDir(PathBuf);

impl PartialDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PartialDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn partial_dir(parent: &Path) -> anyhow::Result<PartialDir> {
    for attempt in 0u32.. {
        let path = parent.join(format!(
            ".pyodide-{VERSION}.partial-{}-{attempt}",
            std::process::id()
        ));
        match fs::create_dir(&path) {
            Ok(()) => return Ok(PartialDir(path)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => {
                return Err(err).with_context(|| format!("creating {}", path.display()));
            }
        }
    }
    unreachable!("an unused name is found")
}

/// The package's tarball from `registry`, checked against npm's integrity hash.
fn download(registry: &str, progress: &mut dyn FnMut(Progress)) -> anyhow::Result<Vec<u8>> {
    let url = format!(
        "{}/pyodide/-/pyodide-{VERSION}.tgz",
        registry.trim_end_matches('/')
    );
    let unavailable = |err: &dyn fmt::Display| {
        anyhow::anyhow!(
            "Python functions need Pyodide {VERSION}, which is not cached yet and could not be \
             downloaded from {url}: {err}. On a machine without access to the npm registry, \
             unpack the npm package pyodide@{VERSION} and pass its package/ directory with \
             --pyodide DIR (or FUNCTIONS_HOST_PYODIDE)"
        )
    };
    let response = ureq::get(&url).call().map_err(|err| unavailable(&err))?;
    let total = response
        .header("content-length")
        .and_then(|length| length.parse::<u64>().ok());
    let mut body = response.into_reader().take(MAX_TARBALL_BYTES + 1);
    let mut tarball = Vec::with_capacity(total.unwrap_or(0).min(MAX_TARBALL_BYTES) as usize);
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let read = body.read(&mut chunk).map_err(|err| unavailable(&err))?;
        if read == 0 {
            break;
        }
        tarball.extend_from_slice(&chunk[..read]);
        progress(Progress {
            received: tarball.len() as u64,
            total,
        });
    }
    if tarball.len() as u64 > MAX_TARBALL_BYTES {
        bail!("{url} is larger than the package can be ({MAX_TARBALL_BYTES} bytes)");
    }
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&tarball))
    );
    if integrity != TARBALL_INTEGRITY {
        bail!(
            "{url} does not match the integrity hash npm publishes for pyodide@{VERSION} \
             (expected {TARBALL_INTEGRITY}, got {integrity}); nothing was cached"
        );
    }
    Ok(tarball)
}

/// Writes the distribution's files from `tarball` (a gzipped tar whose files are under
/// `package/`) into `dir`.
fn unpack(tarball: &[u8], dir: &Path) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
    for entry in archive.entries().context("reading the package")? {
        let mut entry = entry.context("reading the package")?;
        let path = entry.path().context("reading the package")?.into_owned();
        let wanted = File::ALL
            .into_iter()
            .find(|file| path == Path::new("package").join(file.name()));
        if let Some(file) = wanted {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .with_context(|| format!("reading {file} from the package"))?;
            fs::write(dir.join(file.name()), bytes)
                .with_context(|| format!("writing {file} to {}", dir.display()))?;
        }
    }
    Ok(())
}

/// The SHA-256 of the file at `path`, in hex.
fn sha256_of(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}
