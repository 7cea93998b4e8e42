//! Python functions: their code, the Pyodide build they run on, and the memory snapshots they
//! are restored from.
//!
//! A Python function runs in a V8 isolate like a JavaScript one (same limits, logs, dispatcher);
//! instead of a module graph, the isolate loads Pyodide's module factory and boots the
//! interpreter with `ext/python/boot.js`: from a [`MemorySnapshot`] when the function has one
//! (its own, made at deploy after its module was imported, or the build's baseline), otherwise
//! from scratch. [`crate::Engine::snapshot_python`] makes snapshots.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use functions_ext::python::MemorySnapshot;
pub use functions_ext::python::PyodideBuild;
use functions_ext::python::PythonBoot;

use crate::function::Limits;

/// Where the isolate of a Python function finds Pyodide's module factory (its frames are kept
/// out of the function's stack traces, as the host's own are).
pub(crate) const GLUE_SPECIFIER: &str = "pyodide:pyodide.asm.mjs";

/// What starting an interpreter (and making its snapshot) may take: booting from scratch
/// takes seconds of CPU, far more than an invocation may. A function's own snapshot is made
/// within its memory limit plus room for the copy of the interpreter's memory that a snapshot
/// is (whether it then starts within its own limit is checked apart); the baseline
/// (`baseline`: no function yet) with at least 512 MiB.
pub(crate) fn snapshot_limits(function: &Limits, baseline: bool) -> Limits {
    const MIB: u64 = 1024 * 1024;
    let memory_bytes = if baseline {
        function.memory_bytes.max(512 * MIB)
    } else {
        function.memory_bytes.saturating_add(64 * MIB)
    };
    Limits {
        cpu_time: Duration::from_secs(60),
        wall_clock: Duration::from_secs(120),
        memory_bytes,
    }
}

/// A Python function's code: its files, the entry, and what it boots from.
#[derive(Clone, Debug)]
pub struct PythonCode {
    /// The Pyodide build it runs on.
    pub build: Arc<PyodideBuild>,
    /// Its files (path → source), `.py` and any data files they read.
    pub files: BTreeMap<String, String>,
    /// Its requirements' files, by their path in `site-packages` (see
    /// `functions_pyodide::wheels`).
    pub packages: Arc<BTreeMap<String, Vec<u8>>>,
    /// The file whose module is imported (`main.py`); `None` boots the interpreter alone (what
    /// a baseline snapshot holds).
    pub module_file: Option<String>,
    /// The function to call; `None` calls `on_fetch(request, env)`, `handler(event)` or the
    /// module's only public function, whichever it defines first.
    pub entry: Option<String>,
    /// The memory image each invocation restores; `None` boots from scratch (seconds).
    pub snapshot: Option<Arc<MemorySnapshot>>,
}

impl PythonCode {
    /// The interpreter of `build` alone: no files, no module (what a baseline snapshot holds,
    /// and what an interpreter prepared ahead of any function starts as).
    pub fn interpreter(build: Arc<PyodideBuild>) -> Self {
        Self {
            build,
            files: BTreeMap::new(),
            packages: Arc::default(),
            module_file: None,
            entry: None,
            snapshot: None,
        }
    }

    /// Whether an interpreter of `build` with `memory_bytes` of memory can restore `function`
    /// (a Python function of that build and memory limit).
    pub(crate) fn runs_on(
        function: &crate::Function,
        build: &Arc<PyodideBuild>,
        memory_bytes: u64,
    ) -> bool {
        function.python_code().is_some_and(|python| {
            Arc::ptr_eq(&python.build, build)
                && function.settings().limits.memory_bytes == memory_bytes
        })
    }

    /// The Python module name of `module_file` (`pkg/app.py` is `pkg.app`).
    pub fn module_name(&self) -> Option<String> {
        let file = self.module_file.as_deref()?;
        Some(file.strip_suffix(".py").unwrap_or(file).replace('/', "."))
    }

    /// What the isolate boots, for one invocation (or for making a snapshot).
    pub(crate) fn boot(&self, env: &BTreeMap<String, String>, make_snapshot: bool) -> PythonBoot {
        PythonBoot {
            build: self.build.clone(),
            files: self.files.clone(),
            packages: self.packages.clone(),
            module: self.module_name(),
            entry: self.entry.clone(),
            env: env.clone(),
            snapshot: self.snapshot.clone(),
            make_snapshot,
            prepare_only: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_follow_paths() {
        let build = Arc::new(
            PyodideBuild::new(
                "314.0.7",
                &"ab".repeat(32),
                b"\0asm\x01\0\0\0".to_vec(),
                "export default async function _createPyodideModule() {}".into(),
                Vec::new(),
            )
            .unwrap(),
        );
        let code = |file: Option<&str>| PythonCode {
            build: build.clone(),
            files: BTreeMap::new(),
            packages: Arc::default(),
            module_file: file.map(str::to_owned),
            entry: None,
            snapshot: None,
        };
        assert_eq!(code(Some("main.py")).module_name().as_deref(), Some("main"));
        assert_eq!(
            code(Some("pkg/app.py")).module_name().as_deref(),
            Some("pkg.app")
        );
        assert_eq!(code(None).module_name(), None);
    }
}
