//! Unpacking a package into the cache: only the files kept, in one step, nothing on failure.

use std::path::Path;
use std::path::PathBuf;

fn tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tarball = Vec::new();
    let gz = flate2::write::GzEncoder::new(&mut tarball, flate2::Compression::fast());
    let mut archive = tar::Builder::new(gz);
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive.append_data(&mut header, path, *contents).unwrap();
    }
    archive.into_inner().unwrap().finish().unwrap();
    tarball
}

/// Keeps what is under `package/lib/`, flattened.
fn keep_lib(path: &Path) -> Option<PathBuf> {
    let name = path.strip_prefix("package/lib").ok()?.file_name()?;
    Some(PathBuf::from(name))
}

#[test]
fn the_files_kept_are_unpacked_into_their_directory() {
    let cache = tempfile::tempdir().unwrap();
    let package = tarball(&[
        ("package/lib/a.wasm", b"\0asm"),
        ("package/lib/b.js", b"export {}"),
        ("package/README.md", b"left out"),
    ]);
    let check = |dir: &Path| {
        anyhow::ensure!(dir.join("a.wasm").is_file(), "no a.wasm");
        Ok(())
    };
    let dir = functions_npm::unpack_into_cache(&package, cache.path(), "pkg-1", &keep_lib, &check)
        .unwrap();
    assert_eq!(dir, cache.path().join("pkg-1"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.wasm", "b.js"]);
    assert_eq!(std::fs::read(dir.join("b.js")).unwrap(), b"export {}");
    // Nothing else is left in the cache.
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);
}

#[test]
fn a_package_that_fails_its_check_leaves_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let package = tarball(&[("package/lib/a.wasm", b"not wasm")]);
    let check = |_: &Path| anyhow::bail!("a.wasm is not this build's");
    let err = functions_npm::unpack_into_cache(&package, cache.path(), "pkg-1", &keep_lib, &check)
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("a.wasm is not this build's"),
        "{err:#}"
    );
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn a_kept_path_cannot_leave_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let package = tarball(&[("package/lib/a.wasm", b"\0asm")]);
    let escape = |_: &Path| Some(PathBuf::from("../outside"));
    let err =
        functions_npm::unpack_into_cache(&package, cache.path(), "pkg-1", &escape, &|_| Ok(()))
            .unwrap_err();
    assert!(format!("{err:#}").contains("outside the cache"), "{err:#}");
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn the_tarball_address_follows_npm() {
    let package = functions_npm::Package {
        name: "pyodide",
        version: "1.2.3",
        integrity: "sha512-x",
        max_bytes: 1,
    };
    assert_eq!(
        package.tarball_url("https://registry.npmjs.org/"),
        "https://registry.npmjs.org/pyodide/-/pyodide-1.2.3.tgz"
    );
}
