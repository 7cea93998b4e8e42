//! A function's modules: source files compiled once, at deploy, into what V8 loads.
//!
//! TypeScript, TSX and JSX are transpiled to JavaScript by swc (through `deno_ast`, as Deno does),
//! with a source map back to the original file; types are stripped, not checked. JavaScript and JSON
//! are kept as they are. The result is what the host stores and loads in every isolate, so nothing
//! is transpiled per request.

#[cfg(feature = "js")]
use std::collections::BTreeMap;
use std::sync::Arc;

#[cfg(feature = "js")]
use deno_ast::EmitOptions;
#[cfg(feature = "js")]
use deno_ast::MediaType;
#[cfg(feature = "js")]
use deno_ast::ParseParams;
#[cfg(feature = "js")]
use deno_ast::SourceMapOption;
#[cfg(feature = "js")]
use deno_ast::TranspileModuleOptions;
#[cfg(feature = "js")]
use deno_ast::TranspileOptions;
#[cfg(feature = "js")]
use deno_core::ModuleSpecifier;

#[cfg(feature = "js")]
use crate::error::CompileError;
#[cfg(feature = "js")]
use crate::function::root_of;

/// What V8 loads a module as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleKind {
    /// An ES module (JavaScript, or transpiled from TypeScript/JSX).
    JavaScript,
    /// A JSON module, imported `with { type: "json" }`.
    Json,
}

/// One compiled module of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// How it is loaded.
    pub kind: ModuleKind,
    /// The code V8 runs (JavaScript) or parses (JSON).
    pub code: Arc<str>,
    /// Source map from `code` back to `source`, when the two differ.
    pub source_map: Option<Arc<str>>,
    /// The file as deployed: what errors and stack traces refer to.
    pub source: Arc<str>,
}

/// The source languages a file name's extension selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceLanguage {
    /// `.js`, `.mjs`.
    JavaScript,
    /// `.jsx`.
    Jsx,
    /// `.ts`, `.mts`.
    TypeScript,
    /// `.tsx`.
    Tsx,
    /// `.json`.
    Json,
}

impl SourceLanguage {
    /// The language of `path`, from its extension; `None` for anything else.
    pub fn of_path(path: &str) -> Option<Self> {
        let extension = path.rsplit_once('.')?.1;
        Some(match extension {
            "js" | "mjs" => Self::JavaScript,
            "jsx" => Self::Jsx,
            "ts" | "mts" => Self::TypeScript,
            "tsx" => Self::Tsx,
            "json" => Self::Json,
            _ => return None,
        })
    }

    /// The language a data: URL's media type selects.
    pub fn of_media_type(media_type: &str) -> Option<Self> {
        Some(match media_type {
            "text/plain" | "text/javascript" | "application/javascript" => Self::JavaScript,
            "text/typescript" | "application/typescript" => Self::TypeScript,
            "text/jsx" => Self::Jsx,
            "text/tsx" => Self::Tsx,
            "application/json" | "text/json" => Self::Json,
            _ => return None,
        })
    }

    #[cfg(feature = "js")]
    fn media_type(self) -> MediaType {
        match self {
            Self::JavaScript => MediaType::JavaScript,
            Self::Jsx => MediaType::Jsx,
            Self::TypeScript => MediaType::TypeScript,
            Self::Tsx => MediaType::Tsx,
            Self::Json => MediaType::Json,
        }
    }
}

impl Module {
    /// A JavaScript module, run as written.
    pub fn javascript(source: impl Into<Arc<str>>) -> Self {
        let source = source.into();
        Self {
            kind: ModuleKind::JavaScript,
            code: source.clone(),
            source_map: None,
            source,
        }
    }

    /// Compiles `source`, the file at `specifier`, written in `language`. TypeScript and JSX
    /// syntax errors are reported here, with the line and column in `source`; JavaScript is
    /// checked by V8 when the module is loaded.
    #[cfg(feature = "js")]
    pub fn compile(
        specifier: &ModuleSpecifier,
        language: SourceLanguage,
        source: Arc<str>,
    ) -> Result<Self, CompileError> {
        match language {
            SourceLanguage::JavaScript => Ok(Self::javascript(source)),
            SourceLanguage::Json => {
                serde_json::from_str::<serde_json::Value>(&source).map_err(|err| CompileError {
                    message: format!("SyntaxError: invalid JSON: {err}"),
                    file: specifier.to_string(),
                    line: err.line() as u32,
                    column: err.column() as u32,
                })?;
                Ok(Self {
                    kind: ModuleKind::Json,
                    ..Self::javascript(source)
                })
            }
            SourceLanguage::Jsx | SourceLanguage::TypeScript | SourceLanguage::Tsx => {
                transpile(specifier, language, source)
            }
        }
    }
}

#[cfg(feature = "js")]
fn transpile(
    specifier: &ModuleSpecifier,
    language: SourceLanguage,
    source: Arc<str>,
) -> Result<Module, CompileError> {
    let syntax_error = |diagnostic: &deno_ast::ParseDiagnostic| {
        let position = diagnostic.display_position();
        CompileError {
            message: format!("SyntaxError: {}", diagnostic.kind().msg()),
            file: specifier.to_string(),
            line: position.line_number as u32,
            column: position.column_number as u32,
        }
    };
    let parsed = deno_ast::parse_module(ParseParams {
        specifier: specifier.clone(),
        text: source.clone(),
        media_type: language.media_type(),
        capture_tokens: false,
        scope_analysis: false,
        maybe_syntax: None,
    })
    .map_err(|diagnostic| syntax_error(&diagnostic))?;
    let emitted = parsed
        .transpile(
            &TranspileOptions::default(),
            &TranspileModuleOptions::default(),
            &EmitOptions {
                source_map: SourceMapOption::Separate,
                ..EmitOptions::default()
            },
        )
        .map_err(|err| match &err {
            // Errors found parsing, or only once the program is folded (an unclosed block at
            // the end of a file): both point into the source.
            deno_ast::TranspileError::ParseErrors(errors)
            | deno_ast::TranspileError::FoldProgram(
                deno_ast::FoldProgramError::ParseDiagnostics(errors),
            ) if !errors.0.is_empty() => syntax_error(&errors.0[0]),
            _ => CompileError {
                message: err.to_string(),
                file: specifier.to_string(),
                line: 0,
                column: 0,
            },
        })?
        .into_source();
    Ok(Module {
        kind: ModuleKind::JavaScript,
        code: emitted.text.into(),
        source_map: emitted.source_map.map(Into::into),
        source,
    })
}

/// Compiles the source files (path → text) of the function `name` whose handler is in `entry`:
/// TypeScript and JSX are transpiled (see [`Module::compile`]), and `entry` must be among them.
#[cfg(feature = "js")]
pub fn compile_files(
    name: &str,
    entry: &str,
    files: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Module>, CompileError> {
    let root = root_of(name);
    let mut modules = BTreeMap::new();
    for (path, text) in files {
        let specifier = root.join(path).map_err(|err| CompileError {
            message: format!("invalid file name '{path}': {err}"),
            file: path.clone(),
            line: 0,
            column: 0,
        })?;
        let language = SourceLanguage::of_path(path).ok_or_else(|| CompileError {
            message: format!(
                "'{path}' is not a module: file names end in .js, .mjs, .jsx, .ts, .mts, .tsx \
                 or .json"
            ),
            file: specifier.to_string(),
            line: 0,
            column: 0,
        })?;
        let module = Module::compile(&specifier, language, text.as_str().into())?;
        modules.insert(path.clone(), module);
    }
    if !modules.contains_key(entry) {
        return Err(CompileError {
            message: format!("the entry '{entry}' is not among the function's files"),
            file: root
                .join(entry)
                .map_or_else(|_| entry.to_owned(), |url| url.to_string()),
            line: 0,
            column: 0,
        });
    }
    Ok(modules)
}

/// Where the import of `needle` (a specifier, or the end of one, such as a path) first appears in
/// `source`: the 1-based line and column of its opening quote, or `(0, 0)` when it does not.
#[cfg(feature = "js")]
pub(crate) fn position_of_import(source: &str, needle: &str) -> (u32, u32) {
    for quote in ['"', '\'', '`'] {
        let Some(end) = source.find(&format!("{needle}{quote}")) else {
            continue;
        };
        let Some(offset) = source[..end].rfind(quote) else {
            continue;
        };
        let before = &source[..offset];
        let line = before.matches('\n').count() + 1;
        let column = offset - before.rfind('\n').map_or(0, |newline| newline + 1) + 1;
        return (line as u32, column as u32);
    }
    (0, 0)
}

#[cfg(all(test, feature = "js"))]
mod tests {
    use super::*;

    fn specifier(path: &str) -> ModuleSpecifier {
        ModuleSpecifier::parse(&format!("file:///f/{path}")).unwrap()
    }

    #[test]
    fn typescript_loses_its_types_and_gains_a_source_map() {
        let source: Arc<str> =
            "const n: number = 1;\nexport default (e: { a: number }) => e.a + n;\n".into();
        let module =
            Module::compile(&specifier("a.ts"), SourceLanguage::TypeScript, source).unwrap();
        assert_eq!(module.kind, ModuleKind::JavaScript);
        assert!(!module.code.contains(": number"), "{}", module.code);
        assert!(module.source_map.unwrap().contains("file:///f/a.ts"));
    }

    #[test]
    fn typescript_syntax_errors_point_into_the_original_file() {
        let source: Arc<str> =
            "type T = { a: number };\nexport default (e: T) => {\n  return e.a +;\n};\n".into();
        let err =
            Module::compile(&specifier("a.ts"), SourceLanguage::TypeScript, source).unwrap_err();
        assert_eq!(
            (err.file.as_str(), err.line),
            ("file:///f/a.ts", 3),
            "{err:?}"
        );
        assert!(err.message.starts_with("SyntaxError"), "{err:?}");
    }

    #[test]
    fn an_unclosed_block_at_the_end_has_a_position() {
        let source: Arc<str> = "const a = 1, b = 2;\nexport default () => {{ a + b;\n".into();
        let err = Module::compile(&specifier("index.ts"), SourceLanguage::TypeScript, source)
            .unwrap_err();
        assert!(err.line > 0 && err.column > 0, "{err:?}");
    }

    #[test]
    fn json_is_checked() {
        let err = Module::compile(
            &specifier("d.json"),
            SourceLanguage::Json,
            "{\"a\": }".into(),
        )
        .unwrap_err();
        assert_eq!(err.line, 1);
    }

    #[test]
    fn languages_follow_extensions() {
        assert_eq!(
            SourceLanguage::of_path("x/y.mts"),
            Some(SourceLanguage::TypeScript)
        );
        assert_eq!(SourceLanguage::of_path("y.tsx"), Some(SourceLanguage::Tsx));
        assert_eq!(SourceLanguage::of_path("y.py"), None);
    }

    #[test]
    fn import_positions_are_found() {
        let source = "// hi\nimport a from './a.js';\n";
        assert_eq!(position_of_import(source, "./a.js"), (2, 15));
        assert_eq!(position_of_import(source, "a.js"), (2, 15));
        assert_eq!(position_of_import(source, "./b.js"), (0, 0));
    }
}
