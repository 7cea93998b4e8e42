//! `python`: Python functions on Pyodide, booted in a function isolate by `boot.js`.
//!
//! The runtime puts a [`PythonBoot`] in the isolate's `OpState`, loads Pyodide's module factory
//! (`pyodide.asm.mjs`) and calls `preparePython`, then `startPython` (left on the host's
//! internals; the first can be done ahead of time, before the function is known). Through the ops
//! here `boot.js` gets what it needs as bytes, never from a file system or the network: the
//! interpreter's WebAssembly module, compiled once per process and shared by every isolate
//! ([`PyodideBuild`]), the standard library, the function's files, and the memory image to
//! restore ([`MemorySnapshot`]), which an op copies straight into the interpreter's memory; an
//! isolate asked to make a snapshot hands its image back the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

pub use crate::snapshot::MemorySnapshot;

use deno_core::OpState;
use deno_core::op2;
use deno_core::v8;
use serde::Serialize;

use crate::shared_module::SharedModule;

/// Pyodide's snapshot header: magic, offset of the memory image, length of the JSON that
/// follows the header, padding, then the 256-bit build id (see Pyodide's `snapshot.ts`).
const PYODIDE_MAGIC: u32 = 0x706e_7300;
const PYODIDE_HEADER_BYTES: usize = 48;

/// The Python side of the host (entry binding, reseeding after a restore), written into every
/// interpreter booted from scratch and so part of every snapshot.
const HOST_MODULE: &str = include_str!("functions_host.py");

/// What a snapshot holds of the host besides Pyodide (the host module, and what `boot.js`
/// set up), hashed: a snapshot made with another is not restored.
fn host_hash() -> u64 {
    crate::snapshot::fnv1a(&[HOST_MODULE, include_str!("boot.js")])
}

/// One Pyodide build in memory: what every Python isolate of the process shares.
pub struct PyodideBuild {
    version: String,
    build_id: String,
    wasm: SharedModule,
    glue: Arc<str>,
    stdlib: Vec<u8>,
}

impl std::fmt::Debug for PyodideBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyodideBuild")
            .field("version", &self.version)
            .field("build_id", &self.build_id)
            .finish_non_exhaustive()
    }
}

impl PyodideBuild {
    /// A build from its files: `wasm` (`pyodide.asm.wasm`), `glue` (`pyodide.asm.mjs`) and
    /// `stdlib` (`python_stdlib.zip`) of Pyodide `version`. `build_id` (64 hex digits) tells
    /// snapshots of this build from those of any other, which are refused.
    pub fn new(
        version: &str,
        build_id: &str,
        wasm: Vec<u8>,
        glue: String,
        stdlib: Vec<u8>,
    ) -> Result<Self, String> {
        if build_id.len() != 64 || !build_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "a Pyodide build id is 64 hex digits, not '{build_id}'"
            ));
        }
        if !glue.contains("_createPyodideModule") {
            return Err("pyodide.asm.mjs does not define _createPyodideModule".into());
        }
        Ok(Self {
            version: version.to_owned(),
            build_id: build_id.to_ascii_lowercase(),
            wasm: SharedModule::new("pyodide.asm.wasm", wasm)?,
            glue: glue.into(),
            stdlib,
        })
    }

    /// Pyodide's version, as its API reports it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The id snapshots of this build carry.
    pub fn build_id(&self) -> &str {
        &self.build_id
    }

    /// What the snapshots this build (with this host) makes carry, and what a snapshot must
    /// carry to be restored by it: the build id and the host's part of the interpreter.
    pub fn snapshot_tag(&self) -> String {
        format!("{}-{:016x}", self.build_id, host_hash())
    }

    /// `pyodide.asm.mjs`, the module that defines the interpreter's factory.
    pub fn glue(&self) -> &Arc<str> {
        &self.glue
    }
}

impl MemorySnapshot {
    /// Reads a snapshot in Pyodide's format (what `makeSnapshot` returns) that `build` made.
    fn from_pyodide(bytes: &[u8], build: &PyodideBuild) -> Result<Self, String> {
        let word = |index: usize| {
            bytes
                .get(index * 4..index * 4 + 4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
                .ok_or_else(|| "a Pyodide snapshot shorter than its header".to_owned())
        };
        if word(0)? != PYODIDE_MAGIC {
            return Err("not a Pyodide snapshot (bad magic number)".into());
        }
        let memory_at = word(1)? as usize;
        let json_bytes = word(2)? as usize;
        let build_id: String = bytes
            .get(16..PYODIDE_HEADER_BYTES)
            .ok_or("a Pyodide snapshot shorter than its header")?
            .chunks(4)
            .flat_map(|word| {
                // Pyodide writes the id as eight little-endian 32-bit words of hex.
                let value = u32::from_le_bytes(word.try_into().unwrap());
                format!("{value:08x}").into_bytes()
            })
            .map(char::from)
            .collect();
        let references = bytes
            .get(PYODIDE_HEADER_BYTES..PYODIDE_HEADER_BYTES + json_bytes)
            .and_then(|json| std::str::from_utf8(json).ok())
            .ok_or("a Pyodide snapshot's references are cut short")?
            .to_owned();
        let memory = bytes
            .get(memory_at..)
            .ok_or("a Pyodide snapshot's memory is cut short")?;
        if build_id != build.build_id {
            return Err(format!(
                "the snapshot is of Pyodide build {build_id}, not {}",
                build.build_id
            ));
        }
        Ok(Self::new(build.snapshot_tag(), references, memory))
    }

    /// Whether `build` restores it: it made it, with this host.
    pub fn fits(&self, build: &PyodideBuild) -> bool {
        self.tag() == build.snapshot_tag()
    }
}

/// What one Python isolate boots: put in its `OpState` before `preparePython` and
/// `startPython` run.
pub struct PythonBoot {
    /// The Pyodide build.
    pub build: Arc<PyodideBuild>,
    /// The function's files (path → text), written under `/function`.
    pub files: BTreeMap<String, String>,
    /// Its requirements' files (path in `site-packages` → contents).
    pub packages: Arc<BTreeMap<String, Vec<u8>>>,
    /// The module to import (`main` for `main.py`); `None` for a baseline snapshot.
    pub module: Option<String>,
    /// The function to call, when the function names one (otherwise `on_fetch`, `handler` or
    /// the module's only public function).
    pub entry: Option<String>,
    /// The function's environment variables (`os.environ`).
    pub env: BTreeMap<String, String>,
    /// The memory image to restore instead of booting.
    pub snapshot: Option<Arc<MemorySnapshot>>,
    /// Make a snapshot once booted (and the module imported), instead of serving invocations.
    pub make_snapshot: bool,
    /// Only prepare an interpreter to be restored later (`preparePython`), for a function not
    /// known yet.
    pub prepare_only: bool,
}

pub use crate::snapshot::MadeSnapshot;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BootConfig {
    version: String,
    build_id: String,
    files: Vec<(String, String)>,
    /// The requirements' files: their paths and sizes, their bytes one after the other in
    /// what `op_python_packages` returns.
    packages: Vec<(String, usize)>,
    module: Option<String>,
    entry: Option<String>,
    env: BTreeMap<String, String>,
    /// The references of the snapshot to restore, if any (`JSON.parse`d by `boot.js`).
    restore: Option<String>,
    /// The memory size to grow to before the snapshot is copied in.
    memory_bytes: f64,
    make_snapshot: bool,
    prepare_only: bool,
    host_module: &'static str,
}

#[op2]
#[serde]
fn op_python_boot(state: &mut OpState) -> BootConfig {
    let boot = state.borrow::<PythonBoot>();
    BootConfig {
        version: boot.build.version.clone(),
        build_id: boot.build.build_id.clone(),
        files: boot
            .files
            .iter()
            .map(|(path, text)| (path.clone(), text.clone()))
            .collect(),
        packages: boot
            .packages
            .iter()
            .map(|(path, bytes)| (path.clone(), bytes.len()))
            .collect(),
        module: boot.module.clone(),
        entry: boot.entry.clone(),
        env: boot.env.clone(),
        restore: boot.snapshot.as_ref().map(|s| s.references().to_owned()),
        memory_bytes: boot
            .snapshot
            .as_ref()
            .map_or(0.0, |s| s.memory_bytes as f64),
        make_snapshot: boot.make_snapshot,
        prepare_only: boot.prepare_only,
        host_module: HOST_MODULE,
    }
}

/// The interpreter's module object, made from the process's one compiled module (compiled by
/// the first isolate that asks).
#[op2]
fn op_python_wasm_module<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    state: &mut OpState,
) -> v8::Local<'s, v8::Value> {
    let build = state.borrow::<PythonBoot>().build.clone();
    build.wasm.object(scope)
}

/// A copy of the standard library's zip file (the interpreter's file system owns it).
#[op2]
#[buffer]
fn op_python_stdlib(state: &mut OpState) -> Vec<u8> {
    state.borrow::<PythonBoot>().build.stdlib.clone()
}

/// The requirements' files, one after the other (see `BootConfig::packages`).
#[op2]
#[buffer]
fn op_python_packages(state: &mut OpState) -> Vec<u8> {
    state
        .borrow::<PythonBoot>()
        .packages
        .values()
        .flatten()
        .copied()
        .collect()
}

/// Copies the snapshot's memory into the interpreter's (grown to its size first).
#[op2(fast)]
fn op_python_restore(state: &mut OpState, #[buffer] memory: &mut [u8]) -> bool {
    let boot = state.borrow::<PythonBoot>();
    match &boot.snapshot {
        Some(snapshot) if memory.len() as u64 >= snapshot.memory_bytes => {
            snapshot.restore_into(memory);
            true
        }
        _ => false,
    }
}

/// Writes to every page of the interpreter's memory (leaving its bytes as they are), so that
/// the operating system has given it all its pages before a snapshot is copied in: what an
/// interpreter prepared ahead of time does while it waits.
#[op2(fast)]
fn op_python_prefault(#[buffer] memory: &mut [u8]) {
    for page in memory.chunks_mut(4096) {
        // SAFETY: a valid, aligned pointer into `page`; volatile so that it is not elided.
        unsafe { std::ptr::write_volatile(page.as_mut_ptr(), page[0]) };
    }
}

/// Takes the snapshot `boot.js` made (in Pyodide's format), or why it could not.
#[op2(fast)]
fn op_python_snapshot_made(state: &mut OpState, #[buffer] bytes: &[u8]) {
    let made = MemorySnapshot::from_pyodide(bytes, &state.borrow::<PythonBoot>().build);
    state.put(MadeSnapshot(made));
}

#[op2(fast)]
fn op_python_snapshot_failed(state: &mut OpState, #[string] message: &str) {
    state.put(MadeSnapshot(Err(message.to_owned())));
}

deno_core::extension!(
  python,
  deps = [host],
  ops = [
    op_python_boot,
    op_python_wasm_module,
    op_python_stdlib,
    op_python_packages,
    op_python_prefault,
    op_python_restore,
    op_python_snapshot_made,
    op_python_snapshot_failed,
  ],
  esm_entry_point = "ext:python/boot.js",
  esm = [dir "python", "boot.js"],
);

#[cfg(test)]
mod tests {
    use super::*;

    fn pyodide_snapshot(memory: &[u8]) -> Vec<u8> {
        let json = br#"{"hiwireKeys":[null],"immortalKeys":[]}"#;
        let at = (PYODIDE_HEADER_BYTES + json.len()).div_ceil(16) * 16;
        let mut bytes = vec![0; at];
        bytes[0..4].copy_from_slice(&PYODIDE_MAGIC.to_le_bytes());
        bytes[4..8].copy_from_slice(&(at as u32).to_le_bytes());
        bytes[8..12].copy_from_slice(&(json.len() as u32).to_le_bytes());
        for (i, word) in bytes[16..48].chunks_mut(4).enumerate() {
            word.copy_from_slice(&(0x0123_4567u32 + i as u32).to_le_bytes());
        }
        bytes[48..48 + json.len()].copy_from_slice(json);
        bytes.extend_from_slice(memory);
        bytes
    }

    fn build() -> PyodideBuild {
        PyodideBuild::new(
            "314.0.7",
            "0123456701234568012345690123456a0123456b0123456c0123456d0123456e",
            b"\0asm\x01\0\0\0".to_vec(),
            "export default async function _createPyodideModule() {}".into(),
            Vec::new(),
        )
        .unwrap()
    }

    #[test]
    fn snapshots_keep_what_restores_and_drop_trailing_zeros() {
        let mut memory = vec![0u8; 3 * 4096 + 10];
        memory[5] = 1;
        memory[4096 * 2 + 7] = 9;
        let snapshot = MemorySnapshot::from_pyodide(&pyodide_snapshot(&memory), &build()).unwrap();
        assert_eq!(snapshot.memory_bytes(), memory.len() as u64);
        assert_eq!(snapshot.memory.len(), 4096 * 2 + 8);
        assert!(snapshot.fits(&build()));
        assert_eq!(
            snapshot.references(),
            r#"{"hiwireKeys":[null],"immortalKeys":[]}"#
        );
        let stored = MemorySnapshot::from_bytes(&snapshot.to_bytes()).unwrap();
        assert_eq!(stored, snapshot);
        // Restoring over memory that holds other bytes leaves exactly the snapshot's.
        let mut target = vec![7u8; memory.len() + 4096];
        stored.restore_into(&mut target);
        assert_eq!(&target[..memory.len()], &memory[..]);
        assert!(target[memory.len()..].iter().all(|&b| b == 0));
    }

    #[test]
    fn damaged_snapshots_are_refused() {
        assert!(MemorySnapshot::from_pyodide(b"short", &build()).is_err());
        let other = PyodideBuild::new(
            "314.0.7",
            &"f".repeat(64),
            b"\0asm\x01\0\0\0".to_vec(),
            "_createPyodideModule".into(),
            Vec::new(),
        )
        .unwrap();
        let bytes = pyodide_snapshot(&[1, 2, 3]);
        assert!(MemorySnapshot::from_pyodide(&bytes, &other).is_err());
        let stored = MemorySnapshot::from_pyodide(&bytes, &build())
            .unwrap()
            .to_bytes();
        assert!(MemorySnapshot::from_bytes(&stored[..stored.len() - 1]).is_ok());
        assert!(MemorySnapshot::from_bytes(&stored[..70]).is_err());
        assert!(MemorySnapshot::from_bytes(b"something else").is_err());
    }
}
