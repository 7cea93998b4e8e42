//! `functions-host new NAME --lang L`: a function project that builds and deploys as it is
//! (`functions-host deploy NAME`). The templates are the hello examples in `examples/`.

use std::path::Path;

use anyhow::Context;
use anyhow::bail;

/// Files of a new project in `lang`, by path, for a function called `name`.
fn files(name: &str, lang: &str) -> anyhow::Result<Vec<(&'static str, String)>> {
    Ok(match lang.to_ascii_lowercase().as_str() {
        "typescript" | "ts" => vec![(
            "index.ts",
            include_str!("../../../examples/typescript/hello.ts").to_owned(),
        )],
        "javascript" | "js" => vec![(
            "index.js",
            include_str!("../../../examples/javascript/hello.js").to_owned(),
        )],
        "c" => vec![(
            "main.c",
            include_str!("../../../examples/c/hello.c").to_owned(),
        )],
        "rust" | "rs" => vec![
            (
                "main.rs",
                include_str!("../../../examples/rust/hello.rs").to_owned(),
            ),
            (
                "Cargo.toml",
                format!(
                    "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                     # cargo build --release --target wasm32-wasip1, or functions-host deploy .\n\
                     [[bin]]\nname = \"{name}\"\npath = \"main.rs\"\n"
                ),
            ),
        ],
        "go" => vec![
            (
                "main.go",
                include_str!("../../../examples/go/main.go").to_owned(),
            ),
            ("go.mod", format!("module {name}\n\ngo 1.21\n")),
        ],
        "zig" => vec![(
            "main.zig",
            include_str!("../../../examples/zig/hello.zig").to_owned(),
        )],
        "assemblyscript" | "as" => vec![
            (
                "assembly/index.ts",
                include_str!("../../../examples/assemblyscript/assembly/index.ts").to_owned(),
            ),
            (
                "package.json",
                include_str!("../../../examples/assemblyscript/package.json")
                    .replace("functions-host-example-assemblyscript", name),
            ),
        ],
        "python" | "py" => bail!("Python functions are not supported yet"),
        other => bail!(
            "unknown language {other:?}: use rust, go, zig, c, assemblyscript, typescript or javascript"
        ),
    })
}

/// Creates the project directory `name` (which must not exist) and prints how to deploy it.
pub fn new(name: &str, lang: &str) -> anyhow::Result<()> {
    crate::deploy::validate_name(name)?;
    let files = files(name, lang)?;
    let dir = Path::new(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    for (path, contents) in &files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("Created {name}/ ({lang})");
    if files.iter().any(|(path, _)| *path == "package.json") {
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
        ] {
            let files = files("greeter", lang).unwrap();
            assert!(!files.is_empty(), "{lang}");
        }
        let go = files("greeter", "go").unwrap();
        assert!(
            go.iter()
                .any(|(path, text)| *path == "go.mod" && text.contains("module greeter"))
        );
        assert!(
            files("greeter", "python")
                .unwrap_err()
                .to_string()
                .contains("not supported yet")
        );
        assert!(
            files("greeter", "cobol")
                .unwrap_err()
                .to_string()
                .contains("unknown language")
        );
    }
}
