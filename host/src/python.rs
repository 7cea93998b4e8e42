//! Python in the host: the Pyodide build, the baseline snapshot made from it once per build
//! (kept on disk), and the snapshot each Python deploy makes from that.

use std::path::Path;
use std::sync::Arc;

use functions_runtime::Engine;
use functions_runtime::Function;
use functions_runtime::InvokeError;
use functions_runtime::MemorySnapshot;
use functions_runtime::PyodideBuild;
use functions_runtime::PythonCode;
use functions_runtime::Settings;

use crate::Error;
use crate::ErrorKind;
use crate::store::StoredRuntimeCode;

use crate::runtime_setup::OnFirstUse;
use crate::runtime_setup::RuntimeSetup;
use crate::runtime_setup::kept_baseline;

/// A Pyodide build ready to run functions: the build, and its baseline snapshot.
#[derive(Clone)]
pub(crate) struct Ready {
    pub build: Arc<PyodideBuild>,
    pub baseline: Arc<MemorySnapshot>,
}

/// Pyodide, made ready on first use.
pub(crate) type Python = OnFirstUse<Ready>;

impl Python {
    /// The build and its baseline: read (or downloaded) and made the first time, then kept.
    pub async fn ready(&self, engine: &Engine) -> Result<Ready, Error> {
        self.get_or_make(|setup| async move {
            let cache = setup.cache.clone();
            let build = tokio::task::spawn_blocking(move || load_build(&setup))
                .await
                .map_err(Error::internal)?
                .map_err(|message| Error::new(ErrorKind::Unavailable, message))?;
            let baseline = baseline(engine, &build, &cache).await?;
            Ok(Ready { build, baseline })
        })
        .await
    }
}

/// The files `requirements` resolve to on the package index pip uses (network: call it
/// off the async threads); a requirement that cannot be met is the deploy's error, naming it.
pub(crate) fn resolve_requirements(
    requirements: &[String],
) -> Result<std::collections::BTreeMap<String, Vec<u8>>, String> {
    let index = functions_pyodide::wheels::index_from_pip();
    let wheels = functions_pyodide::wheels::resolve(requirements, &index)
        .map_err(|err| format!("{err:#}"))?;
    Ok(functions_pyodide::wheels::site_packages(&wheels))
}

/// Reads the Pyodide build `setup` names, downloading it first if need be.
fn load_build(setup: &RuntimeSetup) -> Result<Arc<PyodideBuild>, String> {
    let distribution = match &setup.local {
        Some(dir) => functions_pyodide::Distribution::open(dir),
        // Its error says what is missing, and how to do without the registry.
        None => functions_pyodide::Distribution::cached(
            &setup.cache,
            &setup.registry,
            &mut setup.tell(),
        ),
    }
    .map_err(|err| format!("{err:#}"))?;
    let read = |file: functions_pyodide::File| {
        distribution
            .read(file)
            .map_err(|err| format!("reading {file} of Pyodide: {err}"))
    };
    let glue = String::from_utf8(read(functions_pyodide::File::Glue)?)
        .map_err(|_| "pyodide.asm.mjs is not UTF-8".to_owned())?;
    PyodideBuild::new(
        functions_pyodide::VERSION,
        functions_pyodide::build_id(),
        read(functions_pyodide::File::Wasm)?,
        glue,
        read(functions_pyodide::File::Stdlib)?,
    )
    .map(Arc::new)
}

/// The baseline snapshot of `build`: from `cache` if one of this build (and host) is there,
/// otherwise made (seconds) and kept there.
async fn baseline(
    engine: &Engine,
    build: &Arc<PyodideBuild>,
    cache: &Path,
) -> Result<Arc<MemorySnapshot>, Error> {
    let file = format!("baseline-{}.snapshot", build.snapshot_tag());
    let interpreter = Function::python(
        "python-baseline",
        1,
        PythonCode::interpreter(build.clone()),
        Settings::default(),
    );
    let make = async {
        engine
            .snapshot_python(&interpreter)
            .await
            .map_err(|err| Error::internal(format!("starting Python failed: {err}")))
    };
    kept_baseline(cache, &file, |snapshot| snapshot.fits(build), make).await
}

/// The file a Python deploy's `entry` names and the function in it, if it names one: `main.py`,
/// `main.py:hello`, or `hello` (a function of `main.py`, or of the only `.py` file).
pub(crate) fn split_entry<'a>(
    entry: &'a str,
    files: impl Iterator<Item = &'a String>,
) -> Result<(String, Option<String>), String> {
    let (file, function) = match entry.split_once(':') {
        Some((file, function)) => (Some(file.to_owned()), Some(function.to_owned())),
        None if entry.ends_with(".py") => (Some(entry.to_owned()), None),
        None => (None, Some(entry.to_owned())),
    };
    let file = match file {
        Some(file) => file,
        None => {
            let modules: Vec<&String> = files.filter(|path| path.ends_with(".py")).collect();
            match modules.as_slice() {
                [only] => (*only).clone(),
                _ if modules.iter().any(|path| *path == "main.py") => "main.py".to_owned(),
                _ => {
                    return Err(format!(
                        "the entry {entry:?} names a function, but not its file: use \
                         \"FILE.py:{entry}\""
                    ));
                }
            }
        }
    };
    if let Some(function) = &function
        && !crate::deploy::is_identifier(function)
    {
        return Err(format!(
            "the entry's function {function:?} is not a Python name"
        ));
    }
    Ok((file, function))
}

/// A Python function's code, as stored, with its `entry` (see [`split_entry`]), restoring
/// `snapshot`.
pub(crate) fn code(
    ready: &Ready,
    entry: &str,
    stored: &StoredRuntimeCode,
    snapshot: Arc<MemorySnapshot>,
) -> Result<PythonCode, String> {
    let (module_file, entry) = split_entry(entry, stored.files.keys())?;
    Ok(PythonCode {
        build: ready.build.clone(),
        files: stored.files.clone(),
        packages: stored.packages.clone(),
        module_file: Some(module_file),
        entry,
        snapshot: Some(snapshot),
    })
}

/// A failure to import a deployed module, as the compile error of a deploy: the traceback, at
/// the last of the function's own lines it names.
pub(crate) fn import_error(err: InvokeError) -> functions_runtime::CompileError {
    let (message, stack) = match err {
        InvokeError::Threw { message, stack } => (message, stack),
        other => (other.to_string(), String::new()),
    };
    let (file, line) = stack
        .lines()
        .rev()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("File \"/function/")?;
            let (file, rest) = rest.split_once('"')?;
            let number = rest.strip_prefix(", line ")?;
            let number = number.split(|c: char| !c.is_ascii_digit()).next()?;
            Some((file.to_owned(), number.parse().ok()?))
        })
        .unwrap_or_default();
    functions_runtime::CompileError {
        message: if stack.is_empty() { message } else { stack },
        file,
        line,
        column: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_name_a_file_a_function_or_both() {
        let files = ["main.py".to_owned(), "util.py".to_owned()];
        let split = |entry| split_entry(entry, files.iter());
        assert_eq!(split("main.py"), Ok(("main.py".into(), None)));
        assert_eq!(
            split("util.py:go"),
            Ok(("util.py".into(), Some("go".into())))
        );
        assert_eq!(split("hello"), Ok(("main.py".into(), Some("hello".into()))));
        assert!(split("main.py:not a name").is_err());
        let one = ["app.py".to_owned()];
        assert_eq!(
            split_entry("hello", one.iter()),
            Ok(("app.py".into(), Some("hello".into())))
        );
        let two = ["a.py".to_owned(), "b.py".to_owned()];
        assert!(split_entry("hello", two.iter()).is_err());
    }

    #[test]
    fn import_errors_point_at_the_functions_last_line() {
        let err = InvokeError::Threw {
            message: "Uncaught NameError: name 'x' is not defined".into(),
            stack: "Traceback (most recent call last):\n  File \"/function/main.py\", line 3, \
                    in <module>\n    import util\n  File \"/function/util.py\", line 1, in \
                    <module>\n    x\nNameError: name 'x' is not defined"
                .into(),
        };
        let compile = import_error(err);
        assert_eq!((compile.file.as_str(), compile.line), ("util.py", 1));
        assert!(compile.message.starts_with("Traceback"));
    }
}
