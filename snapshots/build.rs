//! Builds the base startup snapshot: a V8 heap in which every extension of `functions-ext` has
//! already run, so that an isolate created from it does no JavaScript bootstrap work, and in which
//! the dispatch path is already compiled (see `functions_ext::runtime::warm_up`).

use std::path::Path;
use std::path::PathBuf;

use deno_core::ExtensionFileSourceCode;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let output = deno_core::snapshot::create_snapshot(
        functions_ext::snapshot_options(env!("CARGO_MANIFEST_DIR"), None),
        None,
    )
    .expect("building the base snapshot");
    std::fs::write(out_dir.join("base.snap"), &output.output).expect("writing the base snapshot");
    for path in &output.files_loaded_during_snapshot {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    write_residual_sources(
        &out_dir.join("residual.rs"),
        &output.consumed_lazy_specifiers,
    );
}

/// Writes `RESIDUAL_LAZY_JS`: the `lazy_loaded_js` scripts the snapshot does not hold (those the
/// global scope loads on first use, e.g. `fetch` and Web Crypto), as deno_core wants them: a
/// table of (specifier, source) sorted by specifier, the sources embedded in the binary.
fn write_residual_sources(path: &Path, consumed: &[String]) {
    let mut residual = Vec::new();
    for extension in functions_ext::extensions() {
        for file in extension.lazy_loaded_js_files.iter() {
            if consumed.iter().any(|specifier| specifier == file.specifier) {
                continue;
            }
            let ExtensionFileSourceCode::LoadedFromFsDuringSnapshot(source_path) = file.code else {
                panic!("{} is not a file", file.specifier);
            };
            let source = std::fs::read_to_string(source_path).expect("reading a lazy script");
            // deno_core reads these as one-byte strings.
            assert!(source.is_ascii(), "{} is not ASCII", file.specifier);
            println!("cargo:rerun-if-changed={source_path}");
            residual.push((file.specifier, source_path));
        }
    }
    residual.sort();
    let mut table = String::from(
        "/// The extensions' lazily loaded scripts that [`crate::BASE_SNAPSHOT`] does not hold,\n\
         /// `(specifier, source)` sorted by specifier: pass them as\n\
         /// `RuntimeOptions::residual_lazy_js_sources`.\n\
         pub static RESIDUAL_LAZY_JS: &[(&str, &str)] = &[\n",
    );
    for (specifier, source_path) in residual {
        table.push_str(&format!(
            "    ({specifier:?}, include_str!({source_path:?})),\n"
        ));
    }
    table.push_str("];\n");
    std::fs::write(path, table).expect("writing the residual sources");
}
