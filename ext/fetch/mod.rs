//! `fetch`, `Headers`, `FormData`, `Request`, `Response` and the body mixin (see README.md in this
//! folder). Outgoing requests go through `deno_fetch`'s HTTP client, and reach only the hosts the
//! function was granted at deploy (`allow_net`).

use std::sync::Arc;
use std::sync::LazyLock;

use deno_core::OpState;
use deno_core::op2;
use deno_core::url::Url;
use deno_error::JsErrorBox;
use deno_permissions::Permissions;
use deno_permissions::PermissionsContainer;
use deno_permissions::PermissionsOptions;
use deno_permissions::RuntimePermissionDescriptorParser;

/// The `User-Agent` of outgoing requests (and `navigator.userAgent`).
pub const USER_AGENT: &str = concat!("functions-host/", env!("CARGO_PKG_VERSION"));

static PARSER: LazyLock<Arc<RuntimePermissionDescriptorParser<sys_traits::impls::RealSys>>> =
    LazyLock::new(|| {
        Arc::new(RuntimePermissionDescriptorParser::new(
            sys_traits::impls::RealSys,
        ))
    });

/// What a function's `fetch` may reach: the hosts of its `allow_net` (`host` or `host:port`, as
/// in Deno's `--allow-net`) and nothing else (no files, environment or subprocesses). Built once
/// per function, cheap to clone into each of its isolates.
#[derive(Clone)]
pub struct NetAccess {
    permissions: PermissionsContainer,
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
        let options = PermissionsOptions {
            // `Some(empty)` would mean "every host" to Deno; `None` means none.
            allow_net: (!allow_net.is_empty()).then(|| allow_net.to_vec()),
            prompt: false,
            ..PermissionsOptions::default()
        };
        let permissions = Permissions::from_options(PARSER.as_ref(), &options)
            .map_err(|err| format!("invalid allow_net: {err}"))?;
        Ok(Self {
            permissions: PermissionsContainer::new(PARSER.clone(), permissions),
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
        state.put(self.clone());
    }
}

/// Rejects, with a `TypeError` naming the host, a request to a host the function was not granted.
/// (`op_fetch` checks the same permissions again; this gives the error its Web-platform class.)
#[op2(fast)]
fn op_fetch_check_net(state: &mut OpState, #[string] url: &str) -> Result<(), JsErrorBox> {
    let Ok(url) = Url::parse(url) else {
        return Ok(()); // `op_fetch` reports the invalid URL.
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Ok(());
    }
    let denied = state
        .borrow_mut::<PermissionsContainer>()
        .check_net_url(&url, "fetch()")
        .is_err();
    if !denied {
        return Ok(());
    }
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => url.to_string(),
    };
    let allowed = &state.borrow::<NetAccess>().allow_net;
    let granted = if allowed.is_empty() {
        "this function may not reach any host; grant hosts at deploy with allow_net".to_owned()
    } else {
        format!("this function may reach only {}", allowed.join(", "))
    };
    Err(JsErrorBox::type_error(format!(
        "fetch to \"{host}\" is not allowed: {granted}"
    )))
}

deno_core::extension!(
  fetch,
  deps = [deno_webidl, deno_web],
  ops = [
    op_fetch_check_net,
    deno_fetch::op_fetch,
    deno_fetch::op_fetch_send,
  ],
  lazy_loaded_js = [
    dir "fetch",
    "20_headers.js",
    "21_formdata.js",
    "22_body.js",
    "22_http_client.js",
    "23_request.js",
    "23_response.js",
    "26_fetch.js",
  ],
  state = |state| {
    state.put(deno_fetch::Options {
        user_agent: USER_AGENT.to_owned(),
        ..Default::default()
    });
    NetAccess::none().install(state);
  },
);
