//! Resolves and loads a function's imports: its own files (relative paths) and `data:` URLs.
//!
//! Everything a function imports is deployed with it, so loading never touches the file system or
//! the network. Bare specifiers (`"hono"`) and remote URLs are refused with the import and the
//! importing file named; the first refusal is kept so that a deploy can report it as a
//! [`CompileError`].

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use deno_core::ModuleLoadOptions;
use deno_core::ModuleLoadReferrer;
use deno_core::ModuleLoadResponse;
use deno_core::ModuleLoader;
use deno_core::ModuleResolveResponse;
use deno_core::ModuleSource;
use deno_core::ModuleSourceCode;
use deno_core::ModuleSpecifier;
use deno_core::ModuleType;
use deno_core::RequestedModuleType;
use deno_core::ResolutionKind;
use deno_error::JsErrorBox;

use crate::error::CompileError;
use crate::function::Function;
use crate::module::Module;
use crate::module::ModuleKind;
use crate::module::SourceLanguage;
use crate::module::position_of_import;

/// The first import that could not be resolved or loaded.
#[derive(Clone, Debug)]
pub(crate) struct ImportFailure {
    message: String,
    /// The importing module's URL.
    referrer: String,
    /// The specifier as written in the importing module.
    specifier: String,
}

/// The [`ModuleLoader`] of one function's isolate.
pub(crate) struct FunctionLoader {
    function: Function,
    failure: Rc<RefCell<Option<ImportFailure>>>,
}

impl FunctionLoader {
    pub fn new(function: Function) -> Self {
        Self {
            function,
            failure: Rc::default(),
        }
    }

    /// A handle on the first import failure, readable after the loader moved into a runtime.
    pub fn failures(&self) -> Rc<RefCell<Option<ImportFailure>>> {
        self.failure.clone()
    }

    fn refuse(&self, specifier: &str, referrer: &str, message: String) -> JsErrorBox {
        let mut failure = self.failure.borrow_mut();
        if failure.is_none() {
            *failure = Some(ImportFailure {
                message: message.clone(),
                referrer: referrer.to_owned(),
                specifier: specifier.to_owned(),
            });
        }
        JsErrorBox::type_error(message)
    }

    /// Whether `url` is Pyodide's module factory, which a Python function's isolate loads.
    fn is_python_glue(&self, url: &ModuleSpecifier) -> bool {
        url.as_str() == crate::python::GLUE_SPECIFIER && self.function.python_code().is_some()
    }

    /// The source of the .NET runtime's module at `url`, if the function is a C# function and
    /// `url` is one of the runtime's modules.
    fn dotnet_module(&self, url: &ModuleSpecifier) -> Option<&Arc<str>> {
        let code = self.function.dotnet_code()?;
        code.build.module_source(url.as_str())
    }

    fn load_module(
        &self,
        specifier: &ModuleSpecifier,
        referrer: &str,
        requested: &RequestedModuleType,
    ) -> Result<ModuleSource, JsErrorBox> {
        if let Some(source) = self.dotnet_module(specifier) {
            return Ok(ModuleSource::new(
                ModuleType::JavaScript,
                ModuleSourceCode::String(source.clone().into()),
                specifier,
                None,
            ));
        }
        if self.is_python_glue(specifier)
            && let Some(python) = self.function.python_code()
        {
            return Ok(ModuleSource::new(
                ModuleType::JavaScript,
                ModuleSourceCode::String(python.build.glue().clone().into()),
                specifier,
                None,
            ));
        }
        let decoded;
        let module = if specifier.scheme() == "data" {
            decoded = decode_data_url(specifier)
                .map_err(|message| self.refuse(specifier.as_str(), referrer, message))?;
            &decoded
        } else {
            self.function.module_at(specifier.as_str()).ok_or_else(|| {
                let path = self.function.path_of(specifier.as_str());
                self.refuse(
                    &path,
                    referrer,
                    format!(
                        "module '{path}' imported by '{}' is not part of the function",
                        self.function.path_of(referrer)
                    ),
                )
            })?
        };
        let module_type = match (module.kind, requested) {
            (ModuleKind::JavaScript, RequestedModuleType::None) => ModuleType::JavaScript,
            (ModuleKind::Json, RequestedModuleType::Json) => ModuleType::Json,
            (ModuleKind::Json, _) => {
                return Err(self.refuse(
                    &self.function.path_of(specifier.as_str()),
                    referrer,
                    format!(
                        "'{}' imported by '{}' is JSON: import it with {{ type: \"json\" }}",
                        self.function.path_of(specifier.as_str()),
                        self.function.path_of(referrer)
                    ),
                ));
            }
            (ModuleKind::JavaScript, _) => {
                return Err(self.refuse(
                    &self.function.path_of(specifier.as_str()),
                    referrer,
                    format!(
                        "'{}' imported by '{}' is a JavaScript module, not the type its import \
                         asks for",
                        self.function.path_of(specifier.as_str()),
                        self.function.path_of(referrer)
                    ),
                ));
            }
        };
        Ok(ModuleSource::new(
            module_type,
            ModuleSourceCode::String(module.code.clone().into()),
            specifier,
            None,
        ))
    }
}

impl ModuleLoader for FunctionLoader {
    fn resolve(
        &self,
        specifier: &str,
        referrer: &str,
        _kind: ResolutionKind,
    ) -> ModuleResolveResponse {
        let relative = specifier.starts_with("./")
            || specifier.starts_with("../")
            || specifier.starts_with('/');
        let resolved = if relative {
            ModuleSpecifier::parse(referrer).and_then(|base| base.join(specifier))
        } else {
            ModuleSpecifier::parse(specifier)
        };
        let importer = self.function.path_of(referrer);
        match resolved {
            Ok(url) if self.is_python_glue(&url) || self.dotnet_module(&url).is_some() => Ok(url),
            Ok(url) if url.scheme() == "data" => Ok(url),
            Ok(url) if self.function.module_at(url.as_str()).is_some() => Ok(url),
            Ok(url) if url.as_str().starts_with(self.function.root().as_str()) => {
                Err(self.refuse(
                    specifier,
                    referrer,
                    format!(
                        "import '{specifier}' in '{importer}': the function has no file '{}'",
                        self.function.path_of(url.as_str())
                    ),
                ))
            }
            Ok(url) if relative => Err(self.refuse(
                specifier,
                referrer,
                format!("import '{specifier}' in '{importer}' leads outside the function ({url})"),
            )),
            Ok(url) => Err(self.refuse(
                specifier,
                referrer,
                format!(
                    "import '{specifier}' in '{importer}': {} imports are not supported; deploy the \
                     file with the function and import it by relative path",
                    url.scheme()
                ),
            )),
            Err(_) => Err(self.refuse(
                specifier,
                referrer,
                format!(
                    "import '{specifier}' in '{importer}' is a bare specifier: functions import \
                     their own files by relative path (bundle packages into the function first)"
                ),
            )),
        }
    }

    fn load(
        &self,
        specifier: &ModuleSpecifier,
        referrer: Option<&ModuleLoadReferrer>,
        options: ModuleLoadOptions,
    ) -> ModuleLoadResponse {
        let referrer = referrer.map_or_else(String::new, |r| r.specifier.to_string());
        ModuleLoadResponse::Sync(self.load_module(
            specifier,
            &referrer,
            &options.requested_module_type,
        ))
    }

    fn get_source_map(&self, file_name: &str) -> Option<Cow<'_, [u8]>> {
        let map = self.function.module_at(file_name)?.source_map.as_ref()?;
        Some(Cow::Borrowed(map.as_bytes()))
    }
}

impl ImportFailure {
    /// The failure as a compile error of the importing file, at the import when it can be found.
    pub fn into_compile_error(self, function: &Function) -> CompileError {
        let source = function.module_at(&self.referrer);
        let (line, column) = source.map_or((0, 0), |module| {
            position_of_import(&module.source, &self.specifier)
        });
        CompileError {
            message: format!("TypeError: {}", self.message),
            file: self.referrer,
            line,
            column,
        }
    }
}

/// Decodes a `data:` URL module: `data:[media type][;base64],payload`.
fn decode_data_url(url: &ModuleSpecifier) -> Result<Module, String> {
    let data = data_url::DataUrl::process(url.as_str())
        .map_err(|err| format!("malformed data: URL ({err:?})"))?;
    let mime = data.mime_type();
    let media_type = format!("{}/{}", mime.type_, mime.subtype);
    let (bytes, _) = data
        .decode_to_vec()
        .map_err(|_| "invalid base64 in data: URL".to_owned())?;
    let text: Arc<str> = String::from_utf8(bytes)
        .map_err(|_| "data: URL module is not UTF-8".to_owned())?
        .into();
    let language = SourceLanguage::of_media_type(&media_type)
        .ok_or_else(|| format!("unsupported media type '{media_type}' in data: URL"))?;
    Module::compile(url, language, text).map_err(|err| err.to_string())
}
