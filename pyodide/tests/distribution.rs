//! Finding, downloading, checking and caching the Pyodide build.

use std::io::Read;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;

use functions_pyodide::DEFAULT_REGISTRY;
use functions_pyodide::Distribution;
use functions_pyodide::File;
use functions_pyodide::Progress;
use functions_pyodide::VERSION;

/// A registry nothing answers at.
const NO_REGISTRY: &str = "http://127.0.0.1:9";

fn ignore(_: Progress) {}

#[test]
fn a_local_copy_must_hold_every_file_of_the_release() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pyodide.asm.wasm"),
        b"\0asm not the interpreter",
    )
    .unwrap();
    let err = format!("{:#}", Distribution::open(dir.path()).unwrap_err());
    assert!(
        err.contains(&format!("pyodide.asm.wasm is not Pyodide {VERSION}'s")),
        "{err}"
    );
    for missing in ["pyodide.asm.mjs", "python_stdlib.zip", "pyodide-lock.json"] {
        assert!(err.contains(&format!("{missing} is missing")), "{err}");
    }
    assert!(
        err.contains(&format!("npm pack pyodide@{VERSION}")),
        "{err}"
    );
}

#[test]
fn without_a_registry_or_a_cache_the_error_says_what_to_do() {
    let cache = tempfile::tempdir().unwrap();
    let err = format!(
        "{:#}",
        Distribution::cached(cache.path(), NO_REGISTRY, &mut ignore).unwrap_err()
    );
    assert!(err.contains("could not be downloaded"), "{err}");
    assert!(err.contains("--pyodide DIR"), "{err}");
    assert!(!cache.path().join(format!("pyodide-{VERSION}")).exists());
}

#[test]
fn a_tarball_that_is_not_the_published_one_is_refused() {
    // A registry that serves a package of the right name and the wrong contents.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let registry = format!("http://{}", listener.local_addr().unwrap());
    let mut tarball = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut tarball, flate2::Compression::fast());
        let mut archive = tar::Builder::new(gz);
        let contents = b"not the interpreter";
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive
            .append_data(&mut header, "package/pyodide.asm.wasm", &contents[..])
            .unwrap();
        archive.into_inner().unwrap().finish().unwrap();
    }
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0; 4096];
        let n = stream.read(&mut request).unwrap();
        let request = String::from_utf8_lossy(&request[..n]).into_owned();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            tarball.len()
        )
        .unwrap();
        stream.write_all(&tarball).unwrap();
        request
    });
    let cache = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    let err = Distribution::cached(cache.path(), &registry, &mut |progress| seen.push(progress))
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("does not match the integrity hash"), "{err}");
    let request = server.join().unwrap();
    assert!(
        request.starts_with(&format!("GET /pyodide/-/pyodide-{VERSION}.tgz ")),
        "{request}"
    );
    assert!(seen.last().is_some_and(|p| p.total == Some(p.received)));
    // Nothing was left in the cache, not even a partial directory.
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn the_package_is_downloaded_once_checked_and_then_served_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let registry = functions_pyodide::registry_from_env(DEFAULT_REGISTRY);
    let mut seen = Vec::new();
    let pyodide =
        Distribution::cached(cache.path(), &registry, &mut |progress| seen.push(progress)).unwrap();
    let last = seen.last().copied().unwrap();
    assert!(last.received > 1_000_000, "{last:?}");
    assert_eq!(last.total, Some(last.received));
    assert_eq!(
        pyodide.dir(),
        cache.path().join(format!("pyodide-{VERSION}"))
    );
    let wasm = pyodide.read(File::Wasm).unwrap();
    assert_eq!(&wasm[..4], b"\0asm");
    let names: Vec<_> = std::fs::read_dir(pyodide.dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), File::ALL.len(), "{names:?}");

    // Later, with no registry at all, the cached copy is used.
    let again = Distribution::cached(cache.path(), NO_REGISTRY, &mut |_| {
        panic!("downloaded again")
    })
    .unwrap();
    assert_eq!(again.dir(), pyodide.dir());
    // And a copy given as a directory is the same build.
    assert!(Distribution::open(Path::new(pyodide.dir())).is_ok());

    // A cached copy damaged since is downloaded again.
    let stdlib = pyodide.dir().join(File::Stdlib.name());
    std::fs::write(&stdlib, b"damaged").unwrap();
    let mut downloaded = false;
    let repaired =
        Distribution::cached(cache.path(), &registry, &mut |_| downloaded = true).unwrap();
    assert!(downloaded);
    assert_eq!(repaired.read(File::Stdlib).unwrap()[..2], *b"PK");
}

/// Requirements resolve to pure-Python wheels from the index pip uses, with their
/// dependencies; a package with no such wheel is refused by name.
#[test]
fn requirements_resolve_to_pure_python_wheels() {
    use functions_pyodide::wheels;
    let index = wheels::index_from_pip();
    let resolved = wheels::resolve(&["python-dateutil==2.9.0.post0".to_owned()], &index).unwrap();
    let names: Vec<&str> = resolved.iter().map(|wheel| wheel.name.as_str()).collect();
    assert_eq!(names, ["python-dateutil", "six"], "{resolved:?}");
    let files = wheels::site_packages(&resolved);
    assert!(files.contains_key("dateutil/parser/_parser.py"));
    assert!(files.contains_key("six.py"));
    assert!(resolved.iter().all(|wheel| wheel.sha256.len() == 64));

    let err = wheels::resolve(&["numpy".to_owned()], &index).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("numpy") && message.contains("pure-Python"),
        "{message}"
    );
    let err =
        wheels::resolve(&["no-such-package-functions-host-xyz".to_owned()], &index).unwrap_err();
    assert!(format!("{err:#}").contains("no package named"), "{err:#}");
    let err =
        wheels::resolve(&["six==1.16.0".to_owned(), "six>=99".to_owned()], &index).unwrap_err();
    assert!(format!("{err:#}").contains("conflicts"), "{err:#}");
}

/// An extra brings its own dependencies, also when the package was chosen before the extra was
/// asked for.
#[test]
fn extras_bring_their_dependencies() {
    use functions_pyodide::wheels;
    let index = wheels::index_from_pip();
    let names = |requirements: &[&str]| {
        let requirements: Vec<String> = requirements.iter().map(|r| (*r).to_owned()).collect();
        let resolved = wheels::resolve(&requirements, &index).unwrap();
        resolved
            .into_iter()
            .map(|wheel| wheel.name)
            .collect::<Vec<_>>()
    };
    let plain = names(&["requests==2.32.3"]);
    assert!(plain.contains(&"urllib3".to_owned()), "{plain:?}");
    assert!(!plain.contains(&"pysocks".to_owned()), "{plain:?}");
    for requirements in [
        &["requests[socks]==2.32.3"][..],
        &["requests==2.32.3", "requests[socks]"][..],
    ] {
        let names = names(requirements);
        assert!(
            names.contains(&"pysocks".to_owned()),
            "{requirements:?}: {names:?}"
        );
    }
}
