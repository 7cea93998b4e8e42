//! V8 startup snapshots of the host's JavaScript environment, built at compile time.

/// The base snapshot: deno_core plus every extension of `functions-ext` (web platform, console,
/// the global scope and the invocation dispatcher), already evaluated. Create runtimes from it
/// with exactly `functions_ext::extensions()`.
pub static BASE_SNAPSHOT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/base.snap"));

/// The extensions' lazily loaded scripts that [`BASE_SNAPSHOT`] does not hold, `(specifier,
/// source)` sorted by specifier: pass them as `RuntimeOptions::residual_lazy_js_sources`.
mod residual {
    include!(concat!(env!("OUT_DIR"), "/residual.rs"));
}
pub use residual::RESIDUAL_LAZY_JS;
