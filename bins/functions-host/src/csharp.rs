//! C# functions in the CLI: `.cs` sources (a file, or a directory of them) compiled with the
//! compiler on this machine — the .NET SDK's (`dotnet build`) when there is one, else Mono's
//! `mcs` — or a prebuilt `.dll` as it is; either way with the dispatcher's assembly compiled
//! beside it. What is deployed is the assemblies: the host runs no compiler.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use anyhow::bail;
use base64::Engine as _;

use functions_runtime::DISPATCHER_ASSEMBLY;
use functions_runtime::DISPATCHER_SOURCE;

/// What `--lang` says is C#.
const NAMES: &[&str] = &["csharp", "cs", "c#", "dll", "dotnet"];

/// Directories a project directory's sources are not taken from: build output and other
/// toolchains' packages.
const SKIPPED_DIRS: &[&str] = &["bin", "obj", "node_modules", "target"];

/// Whether the code at `path` is C#: `--lang` says so, or it is a `.cs` or `.dll` file, or a
/// directory with `.cs` files and no JavaScript or Python entry (`has_other_entry`).
pub fn is_csharp(path: &Path, lang: Option<&str>, has_other_entry: bool) -> bool {
    if let Some(lang) = lang {
        return NAMES.contains(&lang.to_ascii_lowercase().as_str());
    }
    if path.is_dir() {
        return !has_other_entry && !sources_in(path).unwrap_or_default().is_empty();
    }
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("cs") || ext.eq_ignore_ascii_case("dll"))
}

/// The `.cs` files under `dir`, skipping hidden entries, [`SKIPPED_DIRS`] and symbolic links.
fn sources_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut sources = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for item in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let item = item?;
            let (path, kind) = (item.path(), item.file_type()?);
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || SKIPPED_DIRS.contains(&name) {
                continue;
            }
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && name.ends_with(".cs") {
                sources.push(path);
            }
        }
    }
    sources.sort();
    Ok(sources)
}

/// A manifest's files for the C# code at `path`: the function's assembly and the
/// dispatcher's (base64), and its sources (text), if it has them; and the compiler that
/// compiled the sources (none for a prebuilt `.dll`).
pub fn files(path: &Path) -> anyhow::Result<(BTreeMap<String, String>, Option<String>)> {
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut files = BTreeMap::new();
    let compiler = Compiler::find();
    let built_with = if path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("dll"))
    {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("Function.dll");
        files.insert(name.to_owned(), encode(&bytes));
        None
    } else {
        let sources = if path.is_dir() {
            sources_in(path)?
        } else {
            vec![path.to_path_buf()]
        };
        if sources.is_empty() {
            bail!("{} has no .cs files", path.display());
        }
        let assembly = assembly_name(path);
        let compiler = compiler.as_ref().map_err(|err| anyhow::anyhow!("{err}"))?;
        let bytes = compiler.compile(&assembly, &sources, false)?;
        for source in &sources {
            let relative = source.strip_prefix(path).unwrap_or(source);
            let relative = match relative.as_os_str().is_empty() {
                true => source.file_name().map(Path::new).unwrap_or(source),
                false => relative,
            };
            let text = std::fs::read_to_string(source)
                .with_context(|| format!("reading {}", source.display()))?;
            files.insert(relative.to_string_lossy().replace('\\', "/"), text);
        }
        files.insert(format!("{assembly}.dll"), encode(&bytes));
        Some(compiler.describe())
    };
    let dispatcher = dispatcher(compiler)?;
    files.insert(format!("{DISPATCHER_ASSEMBLY}.dll"), encode(&dispatcher));
    Ok((files, built_with))
}

/// The name of the assembly the sources at `path` compile to: the file's or directory's name,
/// as an identifier.
fn assembly_name(path: &Path) -> String {
    let stem = std::path::absolute(path)
        .ok()
        .and_then(|path| path.file_stem()?.to_str().map(str::to_owned))
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    match name.chars().next() {
        Some(first) if first.is_ascii_alphabetic() => name,
        _ => "Function".to_owned(),
    }
}

/// The dispatcher's assembly: compiled once per source and compiler, then kept in the user's
/// cache directory (where, with no compiler, any compiler's copy of this source is taken).
fn dispatcher(compiler: anyhow::Result<Compiler>) -> anyhow::Result<Vec<u8>> {
    let prefix = format!("dispatcher-{:016x}-", functions_runtime::dispatcher_hash());
    let compiler = match compiler {
        Ok(compiler) => compiler,
        Err(err) => {
            let kept = std::fs::read_dir(functions_host::user_cache_dir())
                .ok()
                .and_then(|entries| {
                    entries.flatten().find_map(|entry| {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        let ours = name.starts_with(&prefix) && name.ends_with(".dll");
                        ours.then(|| std::fs::read(entry.path()).ok()).flatten()
                    })
                });
            return kept.ok_or(err);
        }
    };
    let made_by: String = (compiler.describe().chars())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cache = functions_host::user_cache_dir().join(format!("{prefix}{made_by}.dll"));
    if let Ok(bytes) = std::fs::read(&cache) {
        return Ok(bytes);
    }
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("Dispatcher.cs");
    std::fs::write(&source, DISPATCHER_SOURCE)?;
    let bytes = compiler.compile(DISPATCHER_ASSEMBLY, &[source], true)?;
    // Kept for the next deploy; one that cannot be kept is compiled again then.
    let partial = cache.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::create_dir_all(functions_host::user_cache_dir())
        .and_then(|()| std::fs::write(&partial, &bytes))
        .and_then(|()| std::fs::rename(&partial, &cache));
    Ok(bytes)
}

/// A C# compiler on this machine.
#[derive(Debug)]
enum Compiler {
    /// The .NET SDK (Roslyn), with its version (`8.0.404`).
    Dotnet(String),
    /// Mono's C# compiler: C# 7.2.
    Mcs,
}

impl Compiler {
    /// The .NET SDK when one is installed, else `mcs`; an error naming both (and how to install
    /// them) when neither is.
    fn find() -> anyhow::Result<Self> {
        let sdk = Command::new("dotnet")
            .arg("--version")
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .filter(|version| {
                version
                    .split('.')
                    .next()
                    .is_some_and(|major| major.parse::<u32>().is_ok())
            });
        if let Some(version) = sdk {
            let major: u32 = version
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if major < 5 {
                bail!(
                    "the .NET SDK {version} is too old to compile C# functions: install .NET 5 \
                     or newer (https://dotnet.microsoft.com/download)"
                );
            }
            return Ok(Self::Dotnet(version));
        }
        let mcs = Command::new("mcs").arg("--version").output();
        if mcs.is_ok_and(|output| output.status.success()) {
            return Ok(Self::Mcs);
        }
        bail!(
            "compiling C# needs a C# compiler, and neither is installed: the .NET SDK \
             (`dotnet`, C# 12 and newer: https://dotnet.microsoft.com/download) or Mono's mcs \
             (C# 7.2: `apt install mono-mcs`)"
        )
    }

    fn describe(&self) -> String {
        match self {
            Self::Dotnet(version) => format!("dotnet {version}"),
            Self::Mcs => "mcs (C# 7.2)".to_owned(),
        }
    }

    /// `sources` compiled into the library `assembly`: its bytes.
    fn compile(
        &self,
        assembly: &str,
        sources: &[PathBuf],
        unsafe_code: bool,
    ) -> anyhow::Result<Vec<u8>> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("out");
        // The compiler's output goes to files: `dotnet build` leaves servers running (MSBuild's
        // nodes, Roslyn's) that would hold pipes open after it exits.
        let log = dir.path().join("compiler.log");
        let mut command = match self {
            Self::Mcs => {
                let mut mcs = Command::new("mcs");
                mcs.arg("-target:library")
                    .arg("-langversion:7.2")
                    .arg("-optimize+")
                    .arg(format!(
                        "-out:{}",
                        out.join(format!("{assembly}.dll")).display()
                    ));
                if unsafe_code {
                    mcs.arg("-unsafe");
                }
                std::fs::create_dir_all(&out)?;
                mcs.args(sources);
                mcs
            }
            Self::Dotnet(version) => {
                // Assemblies of a newer .NET than the runtime's (10) do not load in it.
                let major: u32 = version
                    .split('.')
                    .next()
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(10);
                let framework = format!("net{}.0", major.min(10));
                let compile: String = sources
                    .iter()
                    .map(|source| {
                        let source = std::path::absolute(source).unwrap_or(source.clone());
                        format!(
                            "    <Compile Include=\"{}\" />\n",
                            msbuild_escape(&source.to_string_lossy())
                        )
                    })
                    .collect();
                // The same language rules as mcs where they differ by default: no implicit
                // usings, no nullable analysis.
                let project = format!(
                    "<Project Sdk=\"Microsoft.NET.Sdk\">\n  <PropertyGroup>\n    \
                     <TargetFramework>{framework}</TargetFramework>\n    \
                     <OutputType>Library</OutputType>\n    \
                     <AssemblyName>{assembly}</AssemblyName>\n    \
                     <EnableDefaultCompileItems>false</EnableDefaultCompileItems>\n    \
                     <ImplicitUsings>disable</ImplicitUsings>\n    \
                     <Nullable>disable</Nullable>\n    \
                     <AllowUnsafeBlocks>{unsafe_code}</AllowUnsafeBlocks>\n  \
                     </PropertyGroup>\n  <ItemGroup>\n{compile}  </ItemGroup>\n</Project>\n"
                );
                let project_file = dir.path().join(format!("{assembly}.csproj"));
                std::fs::write(&project_file, project)?;
                let mut dotnet = Command::new("dotnet");
                dotnet
                    .args(["build", "--nologo", "-nodeReuse:false"])
                    .arg("-p:UseSharedCompilation=false")
                    .args(["-c", "Release", "-o"])
                    .arg(&out)
                    .arg(&project_file)
                    .env("DOTNET_CLI_USE_MSBUILD_SERVER", "0")
                    .env("DOTNET_NOLOGO", "1")
                    .env("DOTNET_CLI_TELEMETRY_OPTOUT", "1");
                dotnet
            }
        };
        let output = std::fs::File::create(&log)?;
        let status = command
            .stdin(std::process::Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .status()
            .with_context(|| format!("running {}", self.describe()))?;
        if !status.success() {
            bail!(
                "{} failed:\n{}",
                self.describe(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let dll = out.join(format!("{assembly}.dll"));
        std::fs::read(&dll)
            .with_context(|| format!("{} wrote no {}", self.describe(), dll.display()))
    }
}

/// `text` as an MSBuild item inside XML: MSBuild's special characters as `%XX`, then XML's.
fn msbuild_escape(text: &str) -> String {
    let mut escaped = String::new();
    for c in text.chars() {
        match c {
            '%' | ';' | '$' | '@' | '\'' | '*' | '?' => {
                escaped.push_str(&format!("%{:02X}", c as u32))
            }
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csharp_is_named_by_the_flag_or_the_extension() {
        assert!(is_csharp(Path::new("Hello.cs"), None, false));
        assert!(is_csharp(Path::new("Hello.dll"), None, false));
        assert!(is_csharp(Path::new("anything"), Some("C#"), false));
        assert!(!is_csharp(Path::new("index.ts"), None, false));
        assert!(!is_csharp(Path::new("Hello.cs"), Some("js"), false));
    }

    #[test]
    fn source_paths_are_escaped_for_msbuild() {
        assert_eq!(
            msbuild_escape("/a b/50%;$x@'*?&<\">.cs"),
            "/a b/50%25%3B%24x%40%27%2A%3F&amp;&lt;&quot;&gt;.cs"
        );
    }

    #[test]
    fn assemblies_are_named_after_the_code() {
        assert_eq!(assembly_name(Path::new("Hello.cs")), "Hello");
        assert_eq!(assembly_name(Path::new("my-greeter")), "my_greeter");
        assert_eq!(assembly_name(Path::new("1st.cs")), "Function");
    }
}
