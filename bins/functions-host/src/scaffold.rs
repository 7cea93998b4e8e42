//! `functions-host new NAME --lang L`: a function project that builds and deploys as it is
//! (`functions-host deploy NAME`). The templates are the hello examples in `examples/`.

use std::path::Path;

use anyhow::bail;

use crate::guest_libraries;

/// Files of a new project in `lang`, by path, for a function called `name`. Rust and Go projects
/// carry their guest library in `guest/`, so they build with cargo or go alone, offline.
fn files(name: &str, lang: &str) -> anyhow::Result<Vec<(String, String)>> {
    let file = |path: &str, contents: &str| (path.to_owned(), contents.to_owned());
    let library = |files: guest_libraries::Files| {
        files
            .iter()
            .map(move |(path, contents)| (format!("guest/{path}"), (*contents).to_owned()))
    };
    Ok(match lang.to_ascii_lowercase().as_str() {
        "typescript" | "ts" => vec![file(
            "index.ts",
            include_str!("../../../examples/typescript/hello.ts"),
        )],
        "javascript" | "js" => vec![file(
            "index.js",
            include_str!("../../../examples/javascript/hello.js"),
        )],
        "c" => vec![file("main.c", include_str!("../../../examples/c/hello.c"))],
        "rust" | "rs" => {
            let cargo_toml = format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 # functions-host deploy . (or: cargo build --release --target wasm32-wasip1)\n\
                 [[bin]]\nname = \"{name}\"\npath = \"main.rs\"\n\n\
                 [dependencies]\nfunctions-guest = {{ path = \"guest/functions-guest\" }}\n"
            );
            let mut files = vec![
                file(
                    "main.rs",
                    include_str!("../../../examples/rust-func/main.rs"),
                ),
                (String::from("Cargo.toml"), cargo_toml),
            ];
            files.extend(library(guest_libraries::RUST));
            files
        }
        "go" => {
            let go_mod = format!(
                "module {name}\n\ngo 1.21\n\nrequire {module} v0.0.0\n\nreplace {module} => ./guest\n",
                module = guest_libraries::GO_MODULE
            );
            let mut files = vec![
                file("main.go", include_str!("../../../examples/go-func/main.go")),
                (String::from("go.mod"), go_mod),
            ];
            files.extend(library(guest_libraries::GO));
            files
        }
        "zig" => vec![file(
            "main.zig",
            include_str!("../../../examples/zig/hello.zig"),
        )],
        "assemblyscript" | "as" => vec![
            file(
                "assembly/index.ts",
                include_str!("../../../examples/assemblyscript/assembly/index.ts"),
            ),
            (
                String::from("package.json"),
                include_str!("../../../examples/assemblyscript/package.json")
                    .replace("functions-host-example-assemblyscript", name),
            ),
        ],
        "python" | "py" => vec![file(
            "main.py",
            include_str!("../../../examples/python/hello.py"),
        )],
        "csharp" | "cs" | "c#" => vec![file(
            "Hello.cs",
            include_str!("../../../examples/csharp/Hello.cs"),
        )],
        other => bail!(
            "unknown language {other:?}: use rust, go, zig, c, assemblyscript, typescript, \
             javascript, python or csharp"
        ),
    })
}

/// Creates the project directory `name` (which must not exist) and prints how to deploy it.
pub fn new(name: &str, lang: &str) -> anyhow::Result<()> {
    functions_host::validate_name(name)?;
    let files = files(name, lang)?;
    let dir = Path::new(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    guest_libraries::write(
        dir,
        files
            .iter()
            .map(|(path, text)| (path.as_str(), text.as_str())),
    )?;
    println!("Created {name}/ ({lang})");
    if files.iter().any(|(path, _)| path == "package.json") {
        println!("Install its compiler: (cd {name} && npm install)");
    }
    println!("Deploy it: functions-host deploy {name}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_a_template_naming_the_function() {
        for lang in [
            "rust",
            "go",
            "zig",
            "c",
            "assemblyscript",
            "typescript",
            "javascript",
            "python",
            "csharp",
        ] {
            let files = files("greeter", lang).unwrap();
            assert!(!files.is_empty(), "{lang}");
        }
        let go = files("greeter", "go").unwrap();
        assert!(
            go.iter()
                .any(|(path, text)| path == "go.mod" && text.contains("module greeter"))
        );
        assert!(
            files("greeter", "cobol")
                .unwrap_err()
                .to_string()
                .contains("unknown language")
        );
    }
}
