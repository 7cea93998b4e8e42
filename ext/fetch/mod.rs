//! `fetch`, `Headers`, `FormData`, `Request`, `Response` and the body mixin: `deno_fetch`'s own
//! extension (its ops and its scripts as published), plus `fetch_access`, which lets a function
//! reach only the hosts it was granted at deploy (`allow_net`). See README.md in this folder.

mod addresses;

use std::sync::Arc;
use std::sync::LazyLock;

use deno_core::Extension;
use deno_core::ExtensionFileSource;
use deno_core::ExtensionFileSourceCode;
use deno_core::OpState;
use deno_core::op2;
use deno_permissions::Permissions;
use deno_permissions::PermissionsContainer;
use deno_permissions::PermissionsOptions;
use deno_permissions::RuntimePermissionDescriptorParser;

/// The `User-Agent` of outgoing requests (and `navigator.userAgent`).
pub const USER_AGENT: &str = concat!("functions-host/", env!("CARGO_PKG_VERSION"));

/// `deno_fetch`'s extension as published, with our user agent.
pub fn deno_fetch() -> Extension {
    deno_fetch::deno_fetch::init(options(deno_fetch::dns::Resolver::default()))
}

/// `deno_fetch`'s options: our user agent, names resolved by `resolver`.
fn options(resolver: deno_fetch::dns::Resolver) -> deno_fetch::Options {
    name_tls_provider();
    deno_fetch::Options {
        user_agent: USER_AGENT.to_owned(),
        resolver,
        request_builder_hook: Some(add_traceparent),
        ..Default::default()
    }
}

thread_local! {
    /// The `traceparent` of the invocation whose JavaScript runs on this thread now.
    static TRACEPARENT: std::cell::RefCell<Option<std::rc::Rc<str>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `future` as an invocation whose W3C `traceparent` is `traceparent`: the requests its
/// `fetch` sends carry it (unless they set their own), so the services it calls continue its
/// trace.
pub async fn traced<F: std::future::Future>(traceparent: std::rc::Rc<str>, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let previous = TRACEPARENT.replace(Some(traceparent.clone()));
        let polled = future.as_mut().poll(cx);
        TRACEPARENT.set(previous);
        polled
    })
    .await
}

/// deno_fetch's hook on every outgoing request: the invocation's `traceparent`.
fn add_traceparent(
    request: &mut http::Request<deno_fetch::ReqBody>,
) -> Result<(), deno_error::JsErrorBox> {
    TRACEPARENT.with_borrow(|traceparent| {
        if let Some(traceparent) = traceparent.as_deref().filter(|t| !t.is_empty())
            && !request.headers().contains_key("traceparent")
            && let Ok(value) = http::HeaderValue::from_str(traceparent)
        {
            request.headers_mut().insert("traceparent", value);
        }
    });
    Ok(())
}

/// Makes aws-lc-rs (what Deno itself uses) the process's rustls crypto provider, unless the
/// program named one already. deno_fetch's TLS takes the process's provider, which rustls picks
/// by itself only when exactly one is compiled in; in a program that also links ring (this
/// workspace does, through ureq) every HTTPS fetch would panic instead.
fn name_tls_provider() {
    static NAMED: std::sync::Once = std::sync::Once::new();
    NAMED.call_once(|| {
        // An error means the program installed its own, which stays.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// Changes to `deno_fetch`'s scripts for the base snapshot, as unified diffs against the
/// published files: the body, `Request` and `Response` scripts load streams, form data, blobs,
/// MIME type parsing and `location` on first use instead of at their top level, so that the
/// snapshot (which every isolate deserializes) does not hold them.
const SNAPSHOT_PATCHES: &[(&str, &str)] = &[
    (
        "ext:deno_fetch/22_body.js",
        include_str!("patches/22_body.js.patch"),
    ),
    (
        "ext:deno_fetch/23_request.js",
        include_str!("patches/23_request.js.patch"),
    ),
    (
        "ext:deno_fetch/23_response.js",
        include_str!("patches/23_response.js.patch"),
    ),
];

/// [`deno_fetch`] with [`SNAPSHOT_PATCHES`] applied: what the base snapshot is built with. Its
/// scripts are read from the `deno_fetch` crate's files, so this runs where the snapshot is
/// built; a patch that no longer applies to them fails the build, naming the file.
pub fn deno_fetch_for_snapshot() -> Extension {
    let mut extension = deno_fetch();
    for file in extension.lazy_loaded_js_files.to_mut() {
        let Some((_, patch)) = SNAPSHOT_PATCHES
            .iter()
            .find(|(specifier, _)| *specifier == file.specifier)
        else {
            continue;
        };
        #[allow(deprecated, reason = "reading the published source, whatever its form")]
        let published = match &file.code {
            ExtensionFileSourceCode::LoadedFromFsDuringSnapshot(path) => {
                std::fs::read_to_string(path).unwrap_or_else(|err| panic!("reading {path}: {err}"))
            }
            ExtensionFileSourceCode::IncludedInBinary(code)
            | ExtensionFileSourceCode::LoadedFromMemoryDuringSnapshot(code) => {
                code.as_str().to_owned()
            }
            ExtensionFileSourceCode::Computed(code) => code.to_string(),
        };
        let patch = diffy::Patch::from_str(patch)
            .unwrap_or_else(|err| panic!("the patch of {} is malformed: {err}", file.specifier));
        let patched = diffy::apply(&published, &patch).unwrap_or_else(|err| {
            panic!(
                "the patch of {} does not apply to deno_fetch's file: {err}",
                file.specifier
            )
        });
        *file = ExtensionFileSource::new_computed(file.specifier, patched.into());
    }
    extension
}

static PARSER: LazyLock<Arc<RuntimePermissionDescriptorParser<sys_traits::impls::RealSys>>> =
    LazyLock::new(|| {
        Arc::new(RuntimePermissionDescriptorParser::new(
            sys_traits::impls::RealSys,
        ))
    });

/// What a function's `fetch` may reach: the hosts of its `allow_net` (`host:port`, or `host` for
/// its default ports 80 and 443) and nothing else (no files, environment or subprocesses); a
/// granted name that resolves to an address of this machine or a private network only if that
/// address is granted too. Built once per function, cheap to clone into each of its isolates.
/// `deno_fetch`'s `op_fetch` checks every request against it, redirects included.
#[derive(Clone)]
pub struct NetAccess {
    permissions: PermissionsContainer,
    resolver: deno_fetch::dns::Resolver,
    allow_net: Arc<[String]>,
}

impl std::fmt::Debug for NetAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NetAccess").field(&self.allow_net).finish()
    }
}

impl NetAccess {
    /// Access to the hosts in `allow_net`; `Err` says why an entry is not a host.
    pub fn new(allow_net: &[String]) -> Result<Self, String> {
        let with_ports = addresses::with_default_ports(allow_net);
        let options = PermissionsOptions {
            // `Some(empty)` would mean "every host" to Deno; `None` means none.
            allow_net: (!allow_net.is_empty()).then(|| with_ports.clone()),
            prompt: false,
            ..PermissionsOptions::default()
        };
        let permissions = Permissions::from_options(PARSER.as_ref(), &options)
            .map_err(|err| format!("invalid allow_net: {err}"))?;
        Ok(Self {
            permissions: PermissionsContainer::new(PARSER.clone(), permissions),
            resolver: deno_fetch::dns::Resolver::custom(addresses::GrantedResolver::new(
                &with_ports,
            )),
            allow_net: allow_net.into(),
        })
    }

    /// No host at all: every isolate's access until its function's is installed.
    pub fn none() -> Self {
        static NONE: LazyLock<NetAccess> =
            LazyLock::new(|| NetAccess::new(&[]).expect("no hosts is valid access"));
        NONE.clone()
    }

    /// Makes this the access of the isolate whose state `state` is (replacing any earlier one).
    pub fn install(&self, state: &mut OpState) {
        state.put(self.permissions.clone());
        state.put(options(self.resolver.clone()));
        // `op_fetch` keeps the client it makes from the options: the next one is made anew.
        let _ = state.try_take::<deno_fetch::Client>();
        state.put(self.clone());
    }
}

/// The message of the `TypeError` a request to `host`, which the function was not granted,
/// rejects with (the global scope turns `op_fetch`'s permission error into it).
#[op2]
#[string]
fn op_fetch_denied_message(state: &mut OpState, #[string] host: &str) -> String {
    let allowed = &state.borrow::<NetAccess>().allow_net;
    let granted = if allowed.is_empty() {
        "this function may not reach any host; grant hosts at deploy with allow_net".to_owned()
    } else {
        format!("this function may reach only {}", allowed.join(", "))
    };
    format!("fetch to \"{host}\" is not allowed: {granted}")
}

/// The function's network access ([`NetAccess`], checked by `op_fetch`), and a stand-in for the
/// one script of `deno_net` that `deno_fetch` loads (`tls_stand_in.js`).
pub fn fetch_access() -> Extension {
    let mut extension = fetch_access::init();
    extension
        .lazy_loaded_js_files
        .to_mut()
        .push(ExtensionFileSource::new(
            "ext:deno_net/02_tls.js",
            deno_core::ascii_str_include!("tls_stand_in.js"),
        ));
    extension
}

deno_core::extension!(
    fetch_access,
    deps = [deno_fetch],
    ops = [op_fetch_denied_message],
    state = |state| {
        NetAccess::none().install(state);
    },
);
