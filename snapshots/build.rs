//! Builds the base startup snapshot: a V8 heap in which every extension of `functions-ext` has
//! already run, so that an isolate created from it does no JavaScript bootstrap work, and in which
//! the dispatch path is already compiled (see `functions_ext::runtime::warm_up`).

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("base.snap");
    let output = deno_core::snapshot::create_snapshot(
        deno_core::snapshot::CreateSnapshotOptions {
            cargo_manifest_dir: env!("CARGO_MANIFEST_DIR"),
            startup_snapshot: None,
            skip_op_registration: false,
            extensions: functions_ext::extensions(),
            extension_transpiler: None,
            with_runtime_cb: Some(Box::new(|runtime| functions_ext::runtime::warm_up(runtime))),
        },
        None,
    )
    .expect("building the base snapshot");
    std::fs::write(&out, &output.output).expect("writing the base snapshot");
    for path in output.files_loaded_during_snapshot {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
