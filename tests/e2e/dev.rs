//! `functions-host dev PATH`: one function served locally and redeployed when its files change.

use std::io::BufRead;
use std::io::BufReader;
use std::path::Path;
use std::process::Child;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use crate::harness::BINARY;
use crate::harness::command;
use crate::harness::fixtures;
use crate::harness::request;

/// A running `dev` and everything it printed so far.
struct Dev {
    child: Child,
    base: String,
    printed: Arc<Mutex<String>>,
}

impl Dev {
    /// Starts `functions-host dev ARGS --listen 127.0.0.1:0` and waits until it listens.
    fn start(args: &[&str]) -> Self {
        let mut child = command(BINARY)
            .arg("dev")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let printed = Arc::new(Mutex::new(String::new()));
        let (first, listening) = std::sync::mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stderr = BufReader::new(child.stderr.take().unwrap());
        for (lines, first) in [
            (Box::new(stdout) as Box<dyn BufRead + Send>, Some(first)),
            (Box::new(stderr), None),
        ] {
            let printed = printed.clone();
            std::thread::spawn(move || {
                for line in lines.lines() {
                    let Ok(line) = line else { break };
                    if let Some(first) = &first {
                        let _ = first.send(line.clone());
                    }
                    let mut printed = printed.lock().unwrap();
                    printed.push_str(&line);
                    printed.push('\n');
                }
            });
        }
        let line = listening
            .recv_timeout(Duration::from_secs(60))
            .expect("dev prints where it listens");
        let base = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected first line from dev: {line:?}"))
            .to_owned();
        Self {
            child,
            base,
            printed,
        }
    }

    fn printed(&self) -> String {
        self.printed.lock().unwrap().clone()
    }

    /// Waits (up to 60 s: a guest's toolchain may be slow) until `what` holds.
    fn wait_for(&self, what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !condition() {
            assert!(
                Instant::now() < deadline,
                "never: {what}; dev printed:\n{}",
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until `path` under the function's address answers `body` (given `payload`).
    fn wait_for_answer(&self, path: &str, payload: Option<&[u8]>, body: &str) {
        let url = format!("/fn/{path}");
        self.wait_for(&format!("{url} answers {body:?}"), || {
            let reply = request(&self.base, "POST", &url, payload.map(|p| ("text/plain", p)));
            reply.status == 200 && reply.text().contains(body)
        });
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

#[test]
fn dev_redeploys_a_function_when_its_file_changes_and_shows_compile_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.js");
    std::fs::copy(fixtures().join("js/hello.js"), &file).unwrap();
    let dev = Dev::start(&[file.to_str().unwrap()]);
    let event = Some(&br#"{"name":"Ada"}"#[..]);
    dev.wait_for_answer("hello/", event, "Hello, Ada!");
    // Its console lines are printed.
    dev.wait_for("the console line", || {
        dev.printed().contains("greeting Ada")
    });

    edit(&file, "Hello,", "Howdy,");
    dev.wait_for_answer("hello/", event, "Howdy, Ada!");
    dev.wait_for("the reload", || dev.printed().contains("hello version 2"));

    // Code that does not compile: the error with its line, and the version before serves on.
    std::fs::write(
        &file,
        "export default (event) => {\n  return event.name +;\n};\n",
    )
    .unwrap();
    // The error names the place, and shows its line.
    dev.wait_for("the compile error", || {
        let printed = dev.printed();
        printed.contains("not reloaded")
            && printed.contains("hello.js:2:")
            && printed.contains("2 |   return event.name +;")
    });
    dev.wait_for_answer("hello/", event, "Howdy, Ada!");

    std::fs::write(
        &file,
        "export default (event) => ({ fixed: event.name });\n",
    )
    .unwrap();
    dev.wait_for_answer("hello/", event, r#"{"fixed":"Ada"}"#);
    dev.wait_for("the reload", || dev.printed().contains("hello version 3"));
}

#[test]
fn dev_watches_every_module_of_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    let source = fixtures().join("ts/app");
    for file in ["index.ts", "config.json", "lib/greet.ts", "lib/version.ts"] {
        std::fs::create_dir_all(app.join(file).parent().unwrap()).unwrap();
        std::fs::copy(source.join(file), app.join(file)).unwrap();
    }
    let dev = Dev::start(&[app.to_str().unwrap(), "--env", "GREETING=Hi"]);
    dev.wait_for_answer("app/?name=Ada", None, r#""version":3"#);
    // A module the entry imports, two directories down.
    edit(&app.join("lib/version.ts"), "= 3", "= 4");
    dev.wait_for_answer("app/?name=Ada", None, r#""version":4"#);
    assert!(
        request(&dev.base, "GET", "/fn/app/?name=Ada", None)
            .text()
            .contains("Hi, Ada!")
    );
}

#[test]
fn dev_rebuilds_a_webassembly_guest_when_its_source_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("greeter.c");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/c/hello.c"),
        &file,
    )
    .unwrap();
    let dev = Dev::start(&[file.to_str().unwrap()]);
    dev.wait_for_answer("greeter/", Some(b"Ada"), "Hello, Ada!");
    edit(&file, "\"Hello, %s!\\n\"", "\"Good day, %s!\\n\"");
    dev.wait_for_answer("greeter/", Some(b"Ada"), "Good day, Ada!");
    // A build that fails shows the compiler's message.
    edit(&file, "return 0;", "return 0");
    dev.wait_for("the compiler's error", || {
        let printed = dev.printed();
        printed.contains("not reloaded") && printed.contains("greeter.c")
    });
    dev.wait_for_answer("greeter/", Some(b"Ada"), "Good day, Ada!");
}
