//! The guest libraries, built into the CLI: Rust's `functions-guest` crate (`#[func]`) and Go's
//! `functions-host.dev/guest` package (`guest.Serve`). The CLI compiles sources that use them
//! against these copies, and `functions-host new` writes them into projects, so neither needs a
//! registry.

use std::path::Path;

use anyhow::Context;

/// A library's files, by path relative to the directory it is written into.
pub type Files = &'static [(&'static str, &'static str)];

/// `functions-guest` and `functions-guest-macros`, as two sibling crate directories.
pub const RUST: Files = &[
    (
        "functions-guest/Cargo.toml",
        include_str!("../../../guest/rust/functions-guest/Cargo.toml"),
    ),
    (
        "functions-guest/src/lib.rs",
        include_str!("../../../guest/rust/functions-guest/src/lib.rs"),
    ),
    (
        "functions-guest/src/json.rs",
        include_str!("../../../guest/rust/functions-guest/src/json.rs"),
    ),
    (
        "functions-guest/src/convert.rs",
        include_str!("../../../guest/rust/functions-guest/src/convert.rs"),
    ),
    (
        "functions-guest-macros/Cargo.toml",
        include_str!("../../../guest/rust/functions-guest-macros/Cargo.toml"),
    ),
    (
        "functions-guest-macros/src/lib.rs",
        include_str!("../../../guest/rust/functions-guest-macros/src/lib.rs"),
    ),
];

/// The name Rust sources use the crate by.
pub const RUST_CRATE: &str = "functions_guest";

/// The Go module `functions-host.dev/guest`.
pub const GO: Files = &[
    ("go.mod", include_str!("../../../guest/go/go.mod")),
    ("guest.go", include_str!("../../../guest/go/guest.go")),
];

/// The path Go sources import the package by.
pub const GO_MODULE: &str = "functions-host.dev/guest";

/// Writes `files` (path, contents) under `dir`, creating directories as needed.
pub fn write<'a>(
    dir: &Path,
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> anyhow::Result<()> {
    for (path, contents) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
