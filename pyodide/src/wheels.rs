//! A Python function's requirements: pure-Python wheels (`py3-none-any`) resolved from a
//! package index, downloaded, checked against the hashes the index publishes, and unpacked
//! into the files of `site-packages`.
//!
//! Resolution is greedy, as pip's was before its backtracking resolver: each requirement, and
//! each dependency a chosen wheel declares (with environment markers evaluated for Pyodide:
//! Python 3.14 on `emscripten`), takes the newest version that matches it; a later requirement
//! that the version already chosen does not match is a conflict, reported as such. Indexes are
//! read through their JSON simple API (PEP 691), which PyPI and its mirrors serve.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::io::Read;
use std::str::FromStr;

use anyhow::Context;
use anyhow::bail;
use pep508_rs::MarkerEnvironment;
use pep508_rs::MarkerEnvironmentBuilder;
use pep508_rs::Requirement;
use pep508_rs::VersionOrUrl;
use pep508_rs::pep440_rs::Version;
use serde::Deserialize;
use sha2::Digest;
use sha2::Sha256;

/// The index pip uses when nothing else is configured.
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";

/// The most a wheel may take; larger ones are refused (functions are small).
const MAX_WHEEL_BYTES: u64 = 64 * 1024 * 1024;

/// The most files a function's requirements may unpack to, in bytes.
const MAX_UNPACKED_BYTES: u64 = 64 * 1024 * 1024;

/// The package index pip reaches: `PIP_INDEX_URL`, else `index-url` in pip's configuration
/// files (`/etc/pip.conf`, `~/.config/pip/pip.conf`, `~/.pip/pip.conf`), else PyPI.
pub fn index_from_pip() -> String {
    if let Ok(url) = std::env::var("PIP_INDEX_URL")
        && !url.trim().is_empty()
    {
        return url.trim().to_owned();
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let mut files = vec![std::path::PathBuf::from("/etc/pip.conf")];
    if let Some(home) = home {
        files.push(home.join(".config/pip/pip.conf"));
        files.push(home.join(".pip/pip.conf"));
    }
    // Later files override earlier ones, as in pip.
    files
        .iter()
        .rev()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .find_map(|text| index_url_in(&text))
        .unwrap_or_else(|| DEFAULT_INDEX.to_owned())
}

/// `index-url` of the `[global]` (or `[install]`) section of a pip configuration file.
fn index_url_in(config: &str) -> Option<String> {
    let mut section = "";
    let mut found = None;
    for line in config.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        } else if let Some((key, value)) = line.split_once(['=', ':'])
            && matches!(section, "global" | "install")
            && matches!(key.trim(), "index-url" | "index_url")
        {
            found = Some(value.trim().to_owned());
        }
    }
    found
}

/// One wheel chosen for a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wheel {
    /// The distribution's name as the index spells it.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The wheel's file name.
    pub filename: String,
    /// Its SHA-256, as the index published it and as checked.
    pub sha256: String,
    /// Its files, by their path in `site-packages`.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// The files of `wheels` together, by their path in `site-packages`.
pub fn site_packages(wheels: &[Wheel]) -> BTreeMap<String, Vec<u8>> {
    wheels
        .iter()
        .flat_map(|wheel| wheel.files.clone())
        .collect()
}

/// Files (path → contents) as one byte string, as [`decode_files`] reads them back: each
/// file's path length (u32), path, contents length (u64) and contents, little-endian.
pub fn encode_files(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (path, contents) in files {
        bytes.extend_from_slice(&(path.len() as u32).to_le_bytes());
        bytes.extend_from_slice(path.as_bytes());
        bytes.extend_from_slice(&(contents.len() as u64).to_le_bytes());
        bytes.extend_from_slice(contents);
    }
    bytes
}

/// The files [`encode_files`] wrote.
pub fn decode_files(mut bytes: &[u8]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let take = |bytes: &mut &[u8], n: usize| -> anyhow::Result<Vec<u8>> {
        let (head, rest) = bytes
            .split_at_checked(n)
            .context("stored requirements are cut short")?;
        *bytes = rest;
        Ok(head.to_vec())
    };
    while !bytes.is_empty() {
        let length = u32::from_le_bytes(take(&mut bytes, 4)?.try_into().unwrap()) as usize;
        let path = String::from_utf8(take(&mut bytes, length)?)
            .context("a stored requirement's path is not UTF-8")?;
        let length = u64::from_le_bytes(take(&mut bytes, 8)?.try_into().unwrap());
        let contents = take(&mut bytes, usize::try_from(length)?)?;
        files.insert(path, contents);
    }
    Ok(files)
}

/// Pyodide's environment, for requirements' markers.
fn pyodide_environment() -> MarkerEnvironment {
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: "cpython",
        implementation_version: "3.14.0",
        os_name: "posix",
        platform_machine: "wasm32",
        platform_python_implementation: "CPython",
        platform_release: "",
        platform_system: "Emscripten",
        platform_version: "",
        python_full_version: "3.14.0",
        python_version: "3.14",
        sys_platform: "emscripten",
    })
    .expect("the versions above are valid")
}

/// A file of a project, as the JSON simple API lists it.
#[derive(Deserialize)]
struct IndexFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    #[serde(rename = "requires-python", default)]
    requires_python: Option<String>,
    #[serde(default)]
    yanked: serde_json::Value,
}

#[derive(Deserialize)]
struct IndexProject {
    files: Vec<IndexFile>,
    /// The page's own URL, which relative file URLs are relative to (PEP 691).
    #[serde(skip)]
    url: String,
}

/// Resolves `requirements` (PEP 508 lines, as in `requirements.txt`) against the index at
/// `index` and downloads the wheels: every requirement and dependency, each once.
pub fn resolve(requirements: &[String], index: &str) -> anyhow::Result<Vec<Wheel>> {
    let environment = pyodide_environment();
    let agent = agent();
    // What is still to resolve, each with its markers evaluated when it was queued (a
    // dependency's against the extras asked of the package that declares it).
    let mut queue: VecDeque<(Requirement, Option<String>)> = VecDeque::new();
    for line in requirements {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('-') {
            bail!("requirement {line:?}: pip options are not supported, only package requirements");
        }
        let requirement = Requirement::from_str(line)
            .map_err(|err| anyhow::anyhow!("requirement {line:?} is not valid: {err}"))?;
        if requirement.marker.evaluate(&environment, &[]) {
            queue.push_back((requirement, None));
        }
    }
    let mut chosen: BTreeMap<String, Chosen> = BTreeMap::new();
    let mut budget = MAX_UNPACKED_BYTES;
    while let Some((requirement, wanted_by)) = queue.pop_front() {
        let by = wanted_by
            .as_deref()
            .map(|by| format!(" (required by {by})"))
            .unwrap_or_default();
        let specifiers = match &requirement.version_or_url {
            None => None,
            Some(VersionOrUrl::VersionSpecifier(specifiers)) => Some(specifiers.clone()),
            Some(VersionOrUrl::Url(_)) => {
                bail!(
                    "requirement {requirement}{by}: URLs are not supported, only versions from the index"
                )
            }
        };
        let key = requirement.name.to_string();
        if let Some(known) = chosen.get_mut(&key) {
            if specifiers
                .as_ref()
                .is_some_and(|s| !s.contains(&known.version))
            {
                bail!(
                    "requirement {requirement}{by} conflicts with {key} {}, chosen already",
                    known.version
                );
            }
            // Extras not asked for before bring their dependencies.
            let new_extras: Vec<_> = requirement
                .extras
                .iter()
                .filter(|extra| !known.extras.contains(extra))
                .cloned()
                .collect();
            if !new_extras.is_empty() {
                known.extras.extend(new_extras.iter().cloned());
                let parent = format!("{key} {}", known.version);
                for dependency in &known.dependencies {
                    let for_new_extra = new_extras.iter().any(|extra| {
                        dependency
                            .marker
                            .evaluate(&environment, std::slice::from_ref(extra))
                    });
                    if for_new_extra && !dependency.marker.evaluate(&environment, &[]) {
                        queue.push_back((dependency.clone(), Some(parent.clone())));
                    }
                }
            }
            continue;
        }
        let project = fetch_project(&agent, index, &key)?;
        let mut best: Option<(Version, &IndexFile)> = None;
        for file in &project.files {
            let Some(version) = pure_wheel_version(&file.filename) else {
                continue;
            };
            let yanked = file.yanked.as_bool().unwrap_or(false) || file.yanked.is_string();
            let allows_prereleases = specifiers.as_ref().is_some_and(|s| {
                s.iter()
                    .any(|specifier| specifier.version().any_prerelease())
            });
            let wanted = !yanked
                && (allows_prereleases || !version.any_prerelease())
                && specifiers.as_ref().is_none_or(|s| s.contains(&version))
                && python_allows(file.requires_python.as_deref());
            if wanted && best.as_ref().is_none_or(|(found, _)| version > *found) {
                best = Some((version, file));
            }
        }
        let Some((version, file)) = best else {
            bail!(
                "{requirement}{by} has no pure-Python wheel (py3-none-any) on {index}: only \
                 packages that are pure Python can be used"
            );
        };
        let bytes = download_checked(&agent, &project.url, file)?;
        let (files, declared) = unpack_wheel(&bytes, &file.filename, &mut budget)?;
        let parent = format!("{key} {version}");
        let mut dependencies = Vec::new();
        for line in declared {
            let dependency = Requirement::from_str(&line).map_err(|err| {
                anyhow::anyhow!("{parent} declares a dependency {line:?} that is not valid: {err}")
            })?;
            // A dependency of one of the requirement's extras counts only for that extra.
            if dependency
                .marker
                .evaluate(&environment, &requirement.extras)
            {
                queue.push_back((dependency.clone(), Some(parent.clone())));
            }
            dependencies.push(dependency);
        }
        chosen.insert(
            key.clone(),
            Chosen {
                version: version.clone(),
                extras: requirement.extras.clone(),
                dependencies,
                wheel: Wheel {
                    name: key,
                    version: version.to_string(),
                    filename: file.filename.clone(),
                    sha256: file.hashes.get("sha256").cloned().unwrap_or_default(),
                    files,
                },
            },
        );
    }
    Ok(chosen.into_values().map(|chosen| chosen.wheel).collect())
}

/// A package chosen while resolving: its version, the extras asked of it so far, and the
/// dependencies its wheel declares.
struct Chosen {
    version: Version,
    extras: Vec<pep508_rs::ExtraName>,
    dependencies: Vec<Requirement>,
    wheel: Wheel,
}

/// The HTTP client of an index: connections and reads that stall give up.
fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(15))
        .timeout_read(std::time::Duration::from_secs(60))
        .build()
}

/// The version of a pure-Python wheel (`NAME-VERSION(-BUILD)-py3-none-any.whl`, or a tag set
/// that includes `py3`); `None` for anything else.
fn pure_wheel_version(filename: &str) -> Option<Version> {
    let stem = filename.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    if !(5..=6).contains(&parts.len()) {
        return None;
    }
    let [python, abi, platform] = [
        parts[parts.len() - 3],
        parts[parts.len() - 2],
        parts[parts.len() - 1],
    ];
    let pure = python.split('.').any(|tag| tag == "py3")
        && abi.split('.').any(|tag| tag == "none")
        && platform.split('.').any(|tag| tag == "any");
    if !pure {
        return None;
    }
    Version::from_str(parts[1]).ok()
}

/// Whether Python 3.14 meets a file's `requires-python`.
fn python_allows(requires: Option<&str>) -> bool {
    let Some(requires) = requires.filter(|r| !r.trim().is_empty()) else {
        return true;
    };
    match pep508_rs::pep440_rs::VersionSpecifiers::from_str(requires) {
        Ok(specifiers) => specifiers.contains(&Version::new([3, 14, 0])),
        // What cannot be read is not held against the file.
        Err(_) => true,
    }
}

fn fetch_project(agent: &ureq::Agent, index: &str, name: &str) -> anyhow::Result<IndexProject> {
    let url = format!("{}/{name}/", index.trim_end_matches('/'));
    let response = agent
        .get(&url)
        .set("Accept", "application/vnd.pypi.simple.v1+json")
        .call();
    match response {
        Ok(response) => {
            let mut text = String::new();
            response
                .into_reader()
                .take(64 * 1024 * 1024)
                .read_to_string(&mut text)
                .with_context(|| format!("reading {url}"))?;
            let mut project: IndexProject = serde_json::from_str(&text).with_context(|| {
                format!("{url} did not answer with the JSON simple API (PEP 691)")
            })?;
            project.url = url;
            Ok(project)
        }
        Err(ureq::Error::Status(404, _)) => {
            bail!("there is no package named {name:?} on {index}")
        }
        Err(err) => bail!("the package index {index} could not be reached for {name}: {err}"),
    }
}

/// The file (listed on the project page at `page`) as downloaded, checked against the SHA-256
/// the index published for it.
fn download_checked(agent: &ureq::Agent, page: &str, file: &IndexFile) -> anyhow::Result<Vec<u8>> {
    let Some(expected) = file.hashes.get("sha256") else {
        bail!(
            "{} on {page} has no published SHA-256: it cannot be checked, so it is not used",
            file.filename
        );
    };
    let url = url::Url::parse(page)
        .and_then(|base| base.join(&file.url))
        .with_context(|| format!("the URL of {}", file.filename))?;
    let response = agent
        .get(url.as_str())
        .call()
        .with_context(|| format!("downloading {}", file.filename))?;
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(MAX_WHEEL_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("downloading {}", file.filename))?;
    if bytes.len() as u64 > MAX_WHEEL_BYTES {
        bail!("{} is larger than {MAX_WHEEL_BYTES} bytes", file.filename);
    }
    let actual = functions_npm::hex(&Sha256::digest(&bytes));
    if !actual.eq_ignore_ascii_case(expected) {
        bail!(
            "{} does not match its published SHA-256 (expected {expected}, got {actual})",
            file.filename
        );
    }
    Ok(bytes)
}

/// Files by their path in `site-packages`.
type SitePackages = BTreeMap<String, Vec<u8>>;

/// A wheel's files by their path in `site-packages` (its `.data/purelib` and `.data/platlib`
/// moved to the top, its scripts and headers left out), and the dependencies its metadata
/// declares (`Requires-Dist`). What it unpacks is taken from `budget`, the bytes the
/// requirements may still unpack to; past it, it fails before reading more.
fn unpack_wheel(
    bytes: &[u8],
    filename: &str,
    budget: &mut u64,
) -> anyhow::Result<(SitePackages, Vec<String>)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .with_context(|| format!("{filename} is not a zip file"))?;
    let mut files = BTreeMap::new();
    let mut dependencies = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .with_context(|| format!("reading {filename}"))?;
        if entry.is_dir() {
            continue;
        }
        let Some(path) = entry.enclosed_name() else {
            bail!("{filename} holds a file outside its own tree");
        };
        let path = path.to_string_lossy().replace('\\', "/");
        // `{name}-{version}.data/{purelib,platlib}/...` belongs at the top of site-packages.
        let (top, inner) = path.split_once('/').unwrap_or((&path, ""));
        let path = if top.ends_with(".data") {
            match inner.split_once('/') {
                Some(("purelib" | "platlib", inner)) => inner.to_owned(),
                _ => continue,
            }
        } else {
            path.clone()
        };
        if entry.size() > *budget {
            bail!(
                "the requirements unpack to more than {MAX_UNPACKED_BYTES} bytes (at {path} in \
                 {filename})"
            );
        }
        let mut contents = Vec::with_capacity(entry.size() as usize);
        (&mut entry)
            .take(*budget + 1)
            .read_to_end(&mut contents)
            .with_context(|| format!("reading {path} in {filename}"))?;
        *budget = budget.saturating_sub(contents.len() as u64);
        if path.ends_with(".dist-info/METADATA") && path.matches('/').count() == 1 {
            dependencies = requires_dist(&String::from_utf8_lossy(&contents));
        }
        files.insert(path, contents);
    }
    Ok((files, dependencies))
}

/// The `Requires-Dist` lines of a wheel's METADATA (its header, before the first empty line).
fn requires_dist(metadata: &str) -> Vec<String> {
    metadata
        .lines()
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.strip_prefix("Requires-Dist:"))
        .map(|value| value.trim().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pure_python_wheels_count() {
        let version = |name| pure_wheel_version(name).map(|v| v.to_string());
        assert_eq!(
            version("six-1.16.0-py2.py3-none-any.whl").as_deref(),
            Some("1.16.0")
        );
        assert_eq!(
            version("attrs-23.1.0-py3-none-any.whl").as_deref(),
            Some("23.1.0")
        );
        assert_eq!(version("x-1.0-1-py3-none-any.whl").as_deref(), Some("1.0"));
        assert_eq!(
            version("numpy-2.0.0-cp312-cp312-manylinux_2_17_x86_64.whl"),
            None
        );
        assert_eq!(version("old-1.0-py2-none-any.whl"), None);
        assert_eq!(version("six-1.16.0.tar.gz"), None);
    }

    #[test]
    fn files_are_encoded_and_decoded() {
        let files = BTreeMap::from([
            ("a/__init__.py".to_owned(), b"x = 1\n".to_vec()),
            ("a/data.bin".to_owned(), vec![0, 255, 7]),
            ("empty.py".to_owned(), Vec::new()),
        ]);
        let bytes = encode_files(&files);
        assert_eq!(decode_files(&bytes).unwrap(), files);
        assert!(decode_files(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_files(&[]).unwrap().is_empty());
    }

    #[test]
    fn pip_configuration_names_the_index() {
        let config = "[global]\ncert = /x\nindex-url = https://mirror.example/simple\n";
        assert_eq!(
            index_url_in(config).as_deref(),
            Some("https://mirror.example/simple")
        );
        assert_eq!(index_url_in("[other]\nindex-url = x\n"), None);
    }

    #[test]
    fn metadata_lists_dependencies() {
        let metadata = "Metadata-Version: 2.1\nName: a\nRequires-Dist: b>=1\n\
                        Requires-Dist: c; extra == \"x\"\n\nRequires-Dist: not-header\n";
        assert_eq!(requires_dist(metadata), ["b>=1", "c; extra == \"x\""]);
    }

    #[test]
    fn python_version_requirements_are_honoured() {
        assert!(python_allows(None));
        assert!(python_allows(Some(">=3.8")));
        assert!(!python_allows(Some("<3")));
    }
}
