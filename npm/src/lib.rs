//! functions-npm: the npm packages functions-host runs guest languages on (Pyodide for Python,
//! the .NET WebAssembly runtime for C#), fetched the way npm would and kept.
//!
//! A [`Package`] is one pinned release, named with the integrity hash npm publishes for its
//! tarball. [`Package::download`] fetches the tarball from a registry and refuses any other
//! bytes; [`unpack_into_cache`] writes the files a caller keeps into a directory of the cache
//! in one step (another process never sees half of it, and a failed check leaves nothing).

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

/// Where packages are downloaded from unless the `npm_config_registry` variable (npm's own
/// setting) names another registry.
pub const DEFAULT_REGISTRY: &str = "https://registry.npmjs.org";

/// The registry to download from: `npm_config_registry` (as npm reads it), or `default`.
pub fn registry_from_env(default: &str) -> String {
    std::env::var("npm_config_registry")
        .ok()
        .filter(|registry| !registry.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// How far a download has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes received so far.
    pub received: u64,
    /// The tarball's size, when the registry says it.
    pub total: Option<u64>,
}

/// One release of an npm package.
#[derive(Clone, Copy, Debug)]
pub struct Package {
    /// Its name on the registry (unscoped).
    pub name: &'static str,
    pub version: &'static str,
    /// npm's integrity hash (`dist.integrity`) of its tarball: `sha512-` and base64.
    pub integrity: &'static str,
    /// The most its tarball may take: past it, the download stops.
    pub max_bytes: u64,
}

impl Package {
    /// The address of its tarball on `registry`.
    pub fn tarball_url(&self, registry: &str) -> String {
        format!(
            "{}/{name}/-/{name}-{version}.tgz",
            registry.trim_end_matches('/'),
            name = self.name,
            version = self.version
        )
    }

    /// Its tarball from `registry`, with `progress` told as it arrives, checked against its
    /// integrity hash. When the registry cannot be reached, the error is `unavailable`'s (given
    /// the address and the cause: the caller says what to do instead).
    pub fn download(
        &self,
        registry: &str,
        progress: &mut dyn FnMut(Progress),
        unavailable: &dyn Fn(&str, &dyn fmt::Display) -> anyhow::Error,
    ) -> anyhow::Result<Vec<u8>> {
        let url = self.tarball_url(registry);
        let response = ureq::get(&url)
            .call()
            .map_err(|err| unavailable(&url, &err))?;
        let total = response
            .header("content-length")
            .and_then(|length| length.parse::<u64>().ok());
        let mut body = response.into_reader().take(self.max_bytes + 1);
        let mut tarball = Vec::with_capacity(total.unwrap_or(0).min(self.max_bytes) as usize);
        let mut chunk = vec![0; 64 * 1024];
        loop {
            let read = body
                .read(&mut chunk)
                .map_err(|err| unavailable(&url, &err))?;
            if read == 0 {
                break;
            }
            tarball.extend_from_slice(&chunk[..read]);
            progress(Progress {
                received: tarball.len() as u64,
                total,
            });
        }
        if tarball.len() as u64 > self.max_bytes {
            bail!(
                "{url} is larger than the package can be ({} bytes)",
                self.max_bytes
            );
        }
        let integrity = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&tarball))
        );
        if integrity != self.integrity {
            bail!(
                "{url} does not match the integrity hash npm publishes for {}@{} (expected {}, \
                 got {integrity}); nothing was cached",
                self.name,
                self.version,
                self.integrity
            );
        }
        Ok(tarball)
    }
}

impl Package {
    /// The package as cached in `cache/name`, made by `open` from that directory. When it is
    /// not cached yet (or no longer opens: damaged since), its tarball is downloaded from
    /// `registry` (see [`Package::download`]) and the files `keep` maps are unpacked there
    /// first (see [`unpack_into_cache`]); nothing is cached unless `open` accepts them.
    #[allow(clippy::too_many_arguments)]
    pub fn cached<T>(
        &self,
        cache: &Path,
        name: &str,
        registry: &str,
        progress: &mut dyn FnMut(Progress),
        unavailable: &dyn Fn(&str, &dyn fmt::Display) -> anyhow::Error,
        keep: &dyn Fn(&Path) -> Option<PathBuf>,
        open: &dyn Fn(&Path) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let dir = cache.join(name);
        if dir.is_dir() {
            if let Ok(cached) = open(&dir) {
                return Ok(cached);
            }
            fs::remove_dir_all(&dir)
                .with_context(|| format!("removing the damaged copy in {}", dir.display()))?;
        }
        let tarball = self.download(registry, progress, unavailable)?;
        let check = |dir: &Path| open(dir).map(drop);
        let dir = unpack_into_cache(&tarball, cache, name, keep, &check)?;
        open(&dir)
    }
}

/// Unpacks the files of `tarball` (a gzipped tar) that `keep` maps to a relative path (given
/// each file's path in the tarball, e.g. `package/pyodide.asm.wasm`) into `cache/name`, once
/// `check` accepts the unpacked directory. Until then the files are in a directory of their
/// own beside it, removed on failure; another process that cached the same first wins.
pub fn unpack_into_cache(
    tarball: &[u8],
    cache: &Path,
    name: &str,
    keep: &dyn Fn(&Path) -> Option<PathBuf>,
    check: &dyn Fn(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(cache)
        .with_context(|| format!("creating the cache directory {}", cache.display()))?;
    let partial = PartialDir::new(cache, name)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
    for entry in archive.entries().context("reading the package")? {
        let mut entry = entry.context("reading the package")?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().context("reading the package")?.into_owned();
        let Some(relative) = keep(&path) else {
            continue;
        };
        if relative.is_absolute() || relative.components().any(|c| c.as_os_str() == "..") {
            bail!("{} would be written outside the cache", relative.display());
        }
        let target = partial.path().join(&relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {} from the package", path.display()))?;
        fs::write(&target, bytes).with_context(|| format!("writing {}", target.display()))?;
    }
    check(partial.path()).context("the downloaded package")?;
    let dir = cache.join(name);
    match fs::rename(partial.path(), &dir) {
        Ok(()) => {}
        // Another process cached it first: theirs is as good.
        Err(_) if dir.is_dir() => {}
        Err(err) => {
            return Err(err).with_context(|| format!("moving the package to {}", dir.display()));
        }
    }
    Ok(dir)
}

/// A new, empty directory in `parent`, removed when dropped (unless moved away first).
struct PartialDir(PathBuf);

impl PartialDir {
    fn new(parent: &Path, name: &str) -> anyhow::Result<Self> {
        for attempt in 0u32.. {
            let path = parent.join(format!(".{name}.partial-{}-{attempt}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(Self(path)),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => {
                    return Err(err).with_context(|| format!("creating {}", path.display()));
                }
            }
        }
        unreachable!("an unused name is found")
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PartialDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The SHA-256 of the file at `path`, in hex.
pub fn sha256_of(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// `bytes` in lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
