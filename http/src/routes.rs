//! The route table: every path the server answers, the methods on each, and whether it needs an
//! API key. The router dispatches through it, 404 and 405 come from it, and `openapi.json`
//! describes exactly these routes (a test holds the two together).

use http::Method;
use http::StatusCode;

use super::ApiError;

/// What a request is for, once its route is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/fn/{name}/...`: runs the function.
    Invoke,
    /// `/call/{name}/{token}/...`: runs the function through its call address.
    InvokeByToken,
    /// `/rpc/{name}`: capnweb.
    Rpc,
    /// `GET /healthz`
    Health,
    /// `GET /api/openapi.json`
    OpenApi,
    /// `GET /api/functions`
    List,
    /// `PUT /api/functions/{name}`
    Deploy,
    /// `GET /api/functions/{name}`
    Get,
    /// `DELETE /api/functions/{name}`
    Delete,
    /// `POST /api/functions/{name}/calls`
    Call,
    /// `POST /api/functions/{name}/token`
    RotateToken,
    /// `GET /api/functions/{name}/logs`
    Logs,
    /// `GET /api/calls/{call_id}`
    Result,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /api/metrics`: the dashboard's JSON.
    MetricsSummary,
    /// `GET /`: the dashboard's page.
    Dashboard,
    /// `GET /dashboard/{file}`: the dashboard's script and style.
    DashboardAsset,
}

/// Which methods a route takes.
#[derive(Debug)]
pub(crate) enum Methods {
    /// Every method: the function decides what each means.
    Any(Endpoint),
    /// These methods, each for its endpoint.
    Only(&'static [(Method, Endpoint)]),
}

/// A path template (`{param}` segments match one segment; a final `{path}` matches the rest of
/// the path, however many segments) and what it answers.
#[derive(Debug)]
pub(crate) struct Route {
    pub template: &'static str,
    pub methods: Methods,
    /// Whether a request needs an API key (when the server has keys).
    pub keyed: bool,
}

const fn open(template: &'static str, methods: Methods) -> Route {
    Route {
        template,
        methods,
        keyed: false,
    }
}

const fn keyed(template: &'static str, methods: &'static [(Method, Endpoint)]) -> Route {
    Route {
        template,
        methods: Methods::Only(methods),
        keyed: true,
    }
}

/// Every route, in the order they are tried.
pub(crate) const ROUTES: &[Route] = &[
    open("/fn/{name}", Methods::Any(Endpoint::Invoke)),
    open("/fn/{name}/{path}", Methods::Any(Endpoint::Invoke)),
    open(
        "/call/{name}/{token}",
        Methods::Any(Endpoint::InvokeByToken),
    ),
    open(
        "/call/{name}/{token}/{path}",
        Methods::Any(Endpoint::InvokeByToken),
    ),
    open(
        "/rpc/{name}",
        Methods::Only(&[(Method::POST, Endpoint::Rpc), (Method::GET, Endpoint::Rpc)]),
    ),
    open(
        "/healthz",
        Methods::Only(&[
            (Method::GET, Endpoint::Health),
            (Method::HEAD, Endpoint::Health),
        ]),
    ),
    open(
        "/api/openapi.json",
        Methods::Only(&[(Method::GET, Endpoint::OpenApi)]),
    ),
    keyed("/api/functions", &[(Method::GET, Endpoint::List)]),
    keyed(
        "/api/functions/{name}",
        &[
            (Method::GET, Endpoint::Get),
            (Method::PUT, Endpoint::Deploy),
            (Method::DELETE, Endpoint::Delete),
        ],
    ),
    keyed(
        "/api/functions/{name}/calls",
        &[(Method::POST, Endpoint::Call)],
    ),
    keyed(
        "/api/functions/{name}/token",
        &[(Method::POST, Endpoint::RotateToken)],
    ),
    keyed(
        "/api/functions/{name}/logs",
        &[(Method::GET, Endpoint::Logs)],
    ),
    keyed("/api/calls/{call_id}", &[(Method::GET, Endpoint::Result)]),
    keyed("/api/metrics", &[(Method::GET, Endpoint::MetricsSummary)]),
    keyed("/metrics", &[(Method::GET, Endpoint::Metrics)]),
    // The page holds no data: what it shows comes from /api, with a key when the server has
    // keys (the page asks for it).
    open("/", Methods::Only(&[(Method::GET, Endpoint::Dashboard)])),
    open(
        "/dashboard/{file}",
        Methods::Only(&[(Method::GET, Endpoint::DashboardAsset)]),
    ),
];

/// A request's route: its endpoint, whether it needs a key, and the values of the template's
/// parameters in order (a final `{path}` is left out: handlers read the rest from the URI).
#[derive(Debug, PartialEq)]
pub(crate) struct Found<'a> {
    pub endpoint: Endpoint,
    pub keyed: bool,
    pub params: Vec<&'a str>,
}

impl Route {
    /// The parameters of `path` if it fits this template. One trailing `/` is ignored.
    fn fit<'a>(&self, path: &'a str) -> Option<Vec<&'a str>> {
        let template = self.template.trim_start_matches('/').split('/');
        let mut segments = path.trim_start_matches('/').split('/').peekable();
        let mut params = Vec::new();
        for part in template {
            if part == "{path}" {
                segments.next()?;
                return Some(params);
            }
            let segment = segments.next()?;
            if part.starts_with('{') {
                // Even empty: the handler says what is wrong with the name (a 400 or a 404).
                params.push(segment);
            } else if part != segment {
                return None;
            }
        }
        match (segments.next(), segments.next()) {
            (None, _) | (Some(""), None) => Some(params),
            _ => None,
        }
    }

    /// The methods this route takes, as an `Allow` header lists them.
    fn allow(&self) -> String {
        match &self.methods {
            Methods::Any(_) => "*".to_owned(),
            Methods::Only(methods) => methods
                .iter()
                .map(|(method, _)| method.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The route of `method path`: a 404 when no template fits, a 405 (with `Allow`) when one fits
/// but takes other methods.
pub(crate) fn find<'a>(method: &Method, path: &'a str) -> Result<Found<'a>, ApiError> {
    let mut fitted: Option<&Route> = None;
    for route in ROUTES {
        let Some(params) = route.fit(path) else {
            continue;
        };
        let endpoint = match &route.methods {
            Methods::Any(endpoint) => Some(*endpoint),
            Methods::Only(methods) => methods
                .iter()
                .find(|(m, _)| m == method)
                .map(|(_, endpoint)| *endpoint),
        };
        if let Some(endpoint) = endpoint {
            return Ok(Found {
                endpoint,
                keyed: route.keyed,
                params,
            });
        }
        fitted.get_or_insert(route);
    }
    Err(match fitted {
        Some(route) => ApiError::method_not_allowed(route.allow()),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {method} {path}"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    /// The methods OpenAPI can describe, which is what [`Methods::Any`] is documented as.
    const DOCUMENTED_METHODS: [Method; 8] = [
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::OPTIONS,
        Method::HEAD,
        Method::PATCH,
        Method::TRACE,
    ];

    fn found(method: Method, path: &str) -> Result<(Endpoint, Vec<&str>), StatusCode> {
        find(&method, path)
            .map(|found| (found.endpoint, found.params))
            .map_err(|err| err.status())
    }

    #[test]
    fn requests_find_their_routes() {
        use Endpoint::*;
        assert_eq!(found(Method::GET, "/fn/hello"), Ok((Invoke, vec!["hello"])));
        assert_eq!(
            found(Method::GET, "/fn/hello/"),
            Ok((Invoke, vec!["hello"]))
        );
        assert_eq!(
            found(Method::PATCH, "/fn/hello/a/b/c"),
            Ok((Invoke, vec!["hello"]))
        );
        assert_eq!(
            found(
                Method::from_bytes(b"PROPFIND").unwrap(),
                "/call/hello/t0k/x"
            ),
            Ok((InvokeByToken, vec!["hello", "t0k"]))
        );
        assert_eq!(found(Method::POST, "/rpc/math/"), Ok((Rpc, vec!["math"])));
        assert_eq!(
            found(Method::PUT, "/api/functions/a"),
            Ok((Deploy, vec!["a"]))
        );
        assert_eq!(found(Method::GET, "/api/functions/"), Ok((List, vec![])));
        assert_eq!(
            found(Method::GET, "/api/calls/c-1"),
            Ok((Result, vec!["c-1"]))
        );
        assert!(!find(&Method::GET, "/api/openapi.json").unwrap().keyed);
        assert!(find(&Method::GET, "/api/functions").unwrap().keyed);
        assert_eq!(found(Method::GET, "/"), Ok((Dashboard, vec![])));
        assert!(!find(&Method::GET, "/").unwrap().keyed);
        assert_eq!(
            found(Method::GET, "/dashboard/app.js"),
            Ok((DashboardAsset, vec!["app.js"]))
        );
        assert!(find(&Method::GET, "/metrics").unwrap().keyed);
        assert!(find(&Method::GET, "/api/metrics").unwrap().keyed);
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        assert_eq!(found(Method::GET, "/x"), Err(StatusCode::NOT_FOUND));
        assert_eq!(found(Method::GET, "/fn"), Err(StatusCode::NOT_FOUND));
        assert_eq!(found(Method::GET, "/dashboard"), Err(StatusCode::NOT_FOUND));
        assert_eq!(
            found(Method::POST, "/"),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(
            found(Method::GET, "/fn//x"),
            Ok((Endpoint::Invoke, vec![""]))
        );
        // The list, or a deploy with an empty name (a 400 from the deploy).
        assert_eq!(
            found(Method::GET, "/api/functions/"),
            Ok((Endpoint::List, vec![]))
        );
        assert_eq!(
            found(Method::PUT, "/api/functions/"),
            Ok((Endpoint::Deploy, vec![""]))
        );
        assert_eq!(
            found(Method::GET, "/api/functions/a/b"),
            Err(StatusCode::NOT_FOUND)
        );
        assert_eq!(found(Method::GET, "/rpc/a/b"), Err(StatusCode::NOT_FOUND));
        assert_eq!(found(Method::GET, "/healthz//"), Err(StatusCode::NOT_FOUND));
        let err = find(&Method::POST, "/api/functions/a").unwrap_err();
        assert_eq!(err.status(), StatusCode::METHOD_NOT_ALLOWED);
        let response = err.into_response();
        assert_eq!(response.headers()[http::header::ALLOW], "GET, PUT, DELETE");
    }

    /// `(method, template)` of every operation `openapi.json` describes.
    fn documented() -> BTreeSet<(String, String)> {
        let doc: Value = serde_json::from_str(super::super::OPENAPI).expect("openapi.json parses");
        let mut operations = BTreeSet::new();
        for (template, item) in doc["paths"].as_object().expect("paths") {
            for (method, _) in item.as_object().expect("a path item") {
                if DOCUMENTED_METHODS
                    .iter()
                    .any(|m| m.as_str().eq_ignore_ascii_case(method))
                {
                    operations.insert((method.to_uppercase(), template.clone()));
                }
            }
        }
        operations
    }

    #[test]
    fn the_openapi_document_describes_every_route_and_no_other() {
        let mut routed = BTreeSet::new();
        for route in ROUTES {
            let methods: Vec<&Method> = match &route.methods {
                Methods::Any(_) => DOCUMENTED_METHODS.iter().collect(),
                Methods::Only(methods) => methods.iter().map(|(m, _)| m).collect(),
            };
            for method in methods {
                routed.insert((method.to_string(), route.template.to_owned()));
            }
        }
        let documented = documented();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "routes openapi.json lacks: {undocumented:?}; operations it describes that no route \
             answers: {unrouted:?}"
        );
    }

    #[test]
    fn the_document_asks_for_a_key_where_the_server_does() {
        let doc: Value = serde_json::from_str(super::super::OPENAPI).unwrap();
        for route in ROUTES {
            let Methods::Only(methods) = &route.methods else {
                continue;
            };
            for (method, endpoint) in *methods {
                let operation = &doc["paths"][route.template][method.as_str().to_lowercase()];
                let security = operation["security"]
                    .as_array()
                    .or(doc["security"].as_array());
                let bearer = security.is_some_and(|s| {
                    s.iter()
                        .any(|requirement| requirement.get("bearerAuth").is_some())
                });
                // Functions decide for themselves whether a key is needed; these routes
                // always or never need one.
                if route.keyed || matches!(endpoint, Endpoint::Health | Endpoint::OpenApi) {
                    assert_eq!(
                        bearer, route.keyed,
                        "{method} {}: the document's security does not match the server",
                        route.template
                    );
                }
            }
        }
    }
}
