//! Memory snapshots of WebAssembly runtimes booted in an isolate (Pyodide's interpreter, the
//! .NET runtime): their linear memory once booted, restored into a new isolate's instead of
//! booting again.

/// A memory image: a runtime's linear memory after it booted (and, for a function's own
/// snapshot, loaded the function), with what the JavaScript side needs to pick it up again
/// (`references`, JSON of the runtime's own), and the tag of the build (and host) that made
/// it. Trailing zero bytes of the memory are not kept.
#[derive(Clone, PartialEq, Eq)]
pub struct MemorySnapshot {
    /// What made it: only the same restores it.
    tag: String,
    /// The JavaScript side's part (Pyodide's `hiwireKeys`/`immortalKeys`; .NET's dispatcher
    /// and file descriptors).
    references: String,
    /// The size of the memory when the snapshot was made.
    pub(crate) memory_bytes: u64,
    /// The start of the memory; the rest was zero.
    pub(crate) memory: Vec<u8>,
}

impl std::fmt::Debug for MemorySnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySnapshot")
            .field("tag", &self.tag)
            .field("memory_bytes", &self.memory_bytes)
            .field("stored_bytes", &self.memory.len())
            .finish_non_exhaustive()
    }
}

/// The header of a stored [`MemorySnapshot`] ([`MemorySnapshot::to_bytes`]).
const STORED_MAGIC: &[u8; 8] = b"fhpysnp1";

impl MemorySnapshot {
    /// A snapshot of `memory`, tagged `tag`, with the JavaScript side's `references`.
    pub(crate) fn new(tag: String, references: String, memory: &[u8]) -> Self {
        let used = memory
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |last| last + 1);
        Self {
            tag,
            references,
            memory_bytes: memory.len() as u64,
            memory: memory[..used].to_vec(),
        }
    }

    /// What made it.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The JavaScript side's part.
    pub(crate) fn references(&self) -> &str {
        &self.references
    }

    /// The interpreter's memory size it restores.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// The snapshot as stored: a header, the references, then the memory.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(64 + self.references.len() + self.memory.len());
        bytes.extend_from_slice(STORED_MAGIC);
        bytes.extend_from_slice(&(self.tag.len() as u64).to_le_bytes());
        bytes.extend_from_slice(self.tag.as_bytes());
        bytes.extend_from_slice(&self.memory_bytes.to_le_bytes());
        bytes.extend_from_slice(&(self.references.len() as u64).to_le_bytes());
        bytes.extend_from_slice(self.references.as_bytes());
        bytes.extend_from_slice(&self.memory);
        bytes
    }

    /// Reads a stored snapshot ([`MemorySnapshot::to_bytes`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let cut = || "a stored memory snapshot is cut short".to_owned();
        let rest = bytes
            .strip_prefix(STORED_MAGIC)
            .ok_or("not a stored memory snapshot")?;
        let (tag_bytes, rest) = rest.split_at_checked(8).ok_or_else(cut)?;
        let tag_bytes = u64::from_le_bytes(tag_bytes.try_into().unwrap());
        let (tag, rest) = rest
            .split_at_checked(usize::try_from(tag_bytes).map_err(|_| cut())?)
            .ok_or_else(cut)?;
        let (memory_bytes, rest) = rest.split_at_checked(8).ok_or_else(cut)?;
        let (references_bytes, rest) = rest.split_at_checked(8).ok_or_else(cut)?;
        let references_bytes = u64::from_le_bytes(references_bytes.try_into().unwrap());
        let (references, memory) = rest
            .split_at_checked(usize::try_from(references_bytes).map_err(|_| cut())?)
            .ok_or_else(cut)?;
        let memory_bytes = u64::from_le_bytes(memory_bytes.try_into().unwrap());
        if memory.len() as u64 > memory_bytes {
            return Err("a stored memory snapshot holds more memory than it restores".into());
        }
        Ok(Self {
            tag: String::from_utf8(tag.to_vec()).map_err(|_| cut())?,
            references: String::from_utf8(references.to_vec()).map_err(|_| cut())?,
            memory_bytes,
            memory: memory.to_vec(),
        })
    }

    /// Copies the memory into `target` (the interpreter's memory, at least
    /// [`MemorySnapshot::memory_bytes`] long), page by page, writing only pages that differ from
    /// zero on either side: pages never touched stay unmapped.
    pub(crate) fn restore_into(&self, target: &mut [u8]) {
        const PAGE: usize = 4096;
        for (index, page) in target.chunks_mut(PAGE).enumerate() {
            let start = index * PAGE;
            let source = self
                .memory
                .get(start..(start + page.len()).min(self.memory.len()));
            match source {
                Some(source) if !is_zero(source) => {
                    page[..source.len()].copy_from_slice(source);
                    page[source.len()..].fill(0);
                }
                _ => {
                    if !is_zero(page) {
                        page.fill(0);
                    }
                }
            }
        }
    }
}

/// Whether every byte is zero (read whole, without an early exit, which vectorizes).
fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0, |any, &byte| any | byte) == 0
}

/// A snapshot an isolate made (or why it could not), left in its `OpState`.
pub struct MadeSnapshot(pub Result<MemorySnapshot, String>);

/// FNV-1a of `texts`, one after the other: stable across builds and platforms, unlike std's
/// hasher (what a snapshot holds of the host is tagged with it).
pub(crate) fn fnv1a(texts: &[&str]) -> u64 {
    texts
        .iter()
        .flat_map(|text| text.bytes())
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}
