//! What a `PUT /api/functions/{name}` body means: a single source file or a JSON manifest.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::store::NewDeployment;

/// Languages a deploy may name, and whether this server runs them yet.
const LANGUAGES: &[(&str, &[&str], bool)] = &[
    ("javascript", &["javascript", "js", "mjs"], true),
    ("typescript", &["typescript", "ts", "tsx", "mts"], false),
    ("wasm", &["wasm", "webassembly"], false),
    ("python", &["python", "py"], false),
];

/// Why a deploy body was rejected (always a 400).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DeployError(pub String);

fn bad(message: impl Into<String>) -> DeployError {
    DeployError(message.into())
}

/// The JSON manifest form of a deploy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub language: Option<String>,
    pub entry: Option<String>,
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub isolation: Option<String>,
    #[serde(default)]
    pub bindings: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub limits: BTreeMap<String, serde_json::Value>,
}

/// What the request said besides its body.
#[derive(Debug, Default)]
pub struct DeployHints<'a> {
    /// `?lang=`
    pub lang: Option<&'a str>,
    /// `?entry=` (a file name, also used to guess the language)
    pub entry: Option<&'a str>,
    /// `?isolation=`
    pub isolation: Option<&'a str>,
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
}

/// The canonical name of a language name or file extension, if it is one.
fn canonical_language(value: &str) -> Option<(&'static str, bool)> {
    let value = value.to_ascii_lowercase();
    LANGUAGES
        .iter()
        .find(|(_, aliases, _)| aliases.contains(&value.as_str()))
        .map(|(name, _, supported)| (*name, *supported))
}

fn language_of_content_type(content_type: &str) -> Option<&'static str> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/javascript" | "text/javascript" | "application/ecmascript" => {
            Some("javascript")
        }
        "application/typescript" | "text/typescript" => Some("typescript"),
        "application/wasm" => Some("wasm"),
        "text/x-python" | "application/x-python" => Some("python"),
        _ => None,
    }
}

fn extension(path: &str) -> Option<&str> {
    path.rsplit_once('.').map(|(_, ext)| ext)
}

/// A function name: 1–63 characters of ASCII letters, digits, `-` and `_`, starting with a
/// letter or digit (safe in URLs and paths).
pub fn validate_name(name: &str) -> Result<(), DeployError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(bad(format!(
            "invalid function name {name:?}: use 1-63 letters, digits, '-' or '_', starting with a letter or digit"
        )))
    }
}

fn is_manifest(hints: &DeployHints) -> bool {
    let json = hints.content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/json")
    });
    json || hints.lang == Some("manifest")
}

/// Interprets a deploy body for function `name`.
pub fn parse(name: &str, hints: &DeployHints, body: &[u8]) -> Result<NewDeployment, DeployError> {
    validate_name(name)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(
            "empty body: send the function's source, or a JSON manifest",
        ));
    }
    let manifest = if is_manifest(hints) {
        serde_json::from_slice::<Manifest>(body)
            .map_err(|err| bad(format!("invalid manifest: {err}")))?
    } else {
        let source = std::str::from_utf8(body).map_err(|_| bad("the source is not UTF-8 text"))?;
        let entry = hints.entry.unwrap_or("index.js").to_owned();
        Manifest {
            entry: Some(entry.clone()),
            files: BTreeMap::from([(entry, source.to_owned())]),
            ..Manifest::default()
        }
    };
    let entry = match (&manifest.entry, manifest.files.len()) {
        (Some(entry), _) => entry.clone(),
        (None, 1) => manifest.files.keys().next().cloned().unwrap_or_default(),
        (None, 0) => return Err(bad("the manifest has no files")),
        (None, _) => {
            return Err(bad(
                "the manifest has several files: name the entry with \"entry\"",
            ));
        }
    };
    if entry.is_empty() || entry.starts_with('/') || entry.split('/').any(|part| part == "..") {
        return Err(bad(format!("invalid entry path {entry:?}")));
    }
    let source = manifest
        .files
        .get(&entry)
        .ok_or_else(|| {
            bad(format!(
                "the entry {entry:?} is not among the manifest's files"
            ))
        })?
        .clone();
    if source.trim().is_empty() {
        return Err(bad(format!("the entry {entry:?} is empty")));
    }
    if manifest.files.len() > 1 {
        return Err(bad(
            "multi-file functions are not supported yet: deploy one module",
        ));
    }

    let named = manifest.language.as_deref().or(hints.lang);
    let language = match named {
        Some(value) => canonical_language(value).ok_or_else(|| {
            bad(format!(
                "unknown language {value:?}: use javascript, typescript, wasm or python"
            ))
        })?,
        None => hints
            .content_type
            .and_then(language_of_content_type)
            .map(|lang| canonical_language(lang).expect("listed"))
            .or_else(|| extension(&entry).and_then(canonical_language))
            .unwrap_or(("javascript", true)),
    };
    if !language.1 {
        return Err(bad(format!(
            "language {:?} is not supported by this server yet",
            language.0
        )));
    }

    let isolation = manifest
        .isolation
        .as_deref()
        .or(hints.isolation)
        .unwrap_or("invocation");
    if functions_runtime::Isolation::parse(isolation).is_none() {
        return Err(bad(format!(
            "invalid isolation {isolation:?}: use \"invocation\" or \"function\""
        )));
    }
    if !manifest.bindings.is_empty() {
        return Err(bad("bindings are not supported yet"));
    }
    if !manifest.limits.is_empty() {
        return Err(bad("per-function limits are not supported yet"));
    }
    Ok(NewDeployment {
        name: name.to_owned(),
        language: language.0.to_owned(),
        entry,
        source,
        env: manifest.env,
        isolation: isolation.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for good in ["hello", "a", "my-fn_2", &"x".repeat(63)] {
            validate_name(good).unwrap();
        }
        for bad_name in ["", "../x", "a/b", "-a", "héllo", &"x".repeat(64), "a b"] {
            assert!(validate_name(bad_name).is_err(), "{bad_name:?}");
        }
    }

    #[test]
    fn a_plain_body_is_javascript_unless_told_otherwise() {
        let d = parse("f", &DeployHints::default(), b"export default () => 1").unwrap();
        assert_eq!(
            (d.language.as_str(), d.entry.as_str()),
            ("javascript", "index.js")
        );
        let hints = DeployHints {
            lang: Some("ts"),
            ..DeployHints::default()
        };
        assert!(
            parse("f", &hints, b"x")
                .unwrap_err()
                .0
                .contains("not supported")
        );
        let hints = DeployHints {
            lang: Some("cobol"),
            ..DeployHints::default()
        };
        assert!(
            parse("f", &hints, b"x")
                .unwrap_err()
                .0
                .contains("unknown language")
        );
        let hints = DeployHints {
            entry: Some("main.py"),
            ..DeployHints::default()
        };
        assert!(parse("f", &hints, b"x").unwrap_err().0.contains("python"));
    }

    #[test]
    fn manifests_carry_env_and_isolation() {
        let hints = DeployHints {
            content_type: Some("application/json"),
            ..DeployHints::default()
        };
        let body = br#"{"language":"javascript","entry":"main.js","files":{"main.js":"export default () => 1"},
      "env":{"A":"1"},"isolation":"function"}"#;
        let d = parse("f", &hints, body).unwrap();
        assert_eq!(
            (d.entry.as_str(), d.isolation.as_str()),
            ("main.js", "function")
        );
        assert_eq!(d.env.get("A").map(String::as_str), Some("1"));
        for (body, expected) in [
            (&b"{"[..], "invalid manifest"),
            (b"[]", "invalid manifest"),
            (br#"{"files":{}}"#, "no files"),
            (br#"{"entry":"x.js","files":{"y.js":"1"}}"#, "not among"),
            (
                br#"{"files":{"a.js":"1"},"isolation":"thread"}"#,
                "invalid isolation",
            ),
            (br#"{"files":{"a.js":"1"},"surprise":1}"#, "unknown field"),
            (b"  \n", "empty body"),
        ] {
            let err = parse("f", &hints, body).unwrap_err();
            assert!(
                err.0.contains(expected),
                "{err} does not contain {expected}"
            );
        }
    }
}
