//! The management API under `/api/functions`: deploy, list, get, delete, token, logs.

use functions_host::DeployHints;
use functions_host::DeploySource;
use functions_host::DeploymentSummary;
use functions_host::TenantView;
use http::Request;
use http::StatusCode;
use hyper::body::Incoming;
use serde_json::Value;
use serde_json::json;

use super::ApiError;
use super::HttpResponse;
use super::State;
use super::error::json;
use super::query_param;

/// Most log lines one `GET .../logs` returns.
const MAX_LOG_PAGE: u32 = 10_000;

/// A function's JSON description, with its URLs on this server.
fn summary(state: &State, d: &DeploymentSummary) -> Value {
    let base = &state.public_url;
    json!({
      "name": d.name,
      "version": d.version,
      "language": d.language.as_str(),
      "entry": d.entry,
      "isolation": d.isolation.as_str(),
      "url": format!("{base}/fn/{}/", d.name),
      "call_url": format!("{base}/call/{}/{}/", d.name, d.call_token),
      "public": d.public,
      "owner": d.owner,
      "limits": d.limits,
      "created_at": humantime_ms(d.created_at),
      "deployed_at": humantime_ms(d.deployed_at),
    })
}

/// RFC 3339 with milliseconds, in UTC.
fn humantime_ms(unix_millis: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_millis.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// `PUT /api/functions/{name}`: checks the code compiles, stores a new version, makes it current.
pub(crate) async fn deploy(
    state: &State,
    view: TenantView<'_>,
    name: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    functions_host::validate_name(name).map_err(|err| ApiError::bad_request(err.to_string()))?;
    let (parts, body) = request.into_parts();
    let body = state
        .read_body(body, functions_host::MAX_DEPLOY_BYTES)
        .await?;
    let query = parts.uri.query();
    let param = |key: &str| query_param(query, key);
    let hints = DeployHints {
        lang: param("lang"),
        entry: param("entry"),
        isolation: param("isolation"),
        executor: param("executor"),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let deployed = view
        .deploy(name, DeploySource::Body { body: &body, hints })
        .await?;
    Ok(json(StatusCode::CREATED, &summary(state, &deployed)))
}

/// `GET /api/functions`
pub(crate) async fn list(state: &State, view: TenantView<'_>) -> Result<HttpResponse, ApiError> {
    let all = view.list().await?;
    let functions: Vec<Value> = all.iter().map(|d| summary(state, d)).collect();
    Ok(json(StatusCode::OK, &json!({ "functions": functions })))
}

/// `GET /api/functions/{name}`: the summary plus the source and env variable names.
pub(crate) async fn get(
    state: &State,
    view: TenantView<'_>,
    name: &str,
) -> Result<HttpResponse, ApiError> {
    let deployment = view.get(name).await?;
    let mut body = summary(state, &deployment.summary);
    if let Some(entry) = deployment.modules.get(&deployment.summary.entry) {
        body["source"] = (*entry.source).into();
    }
    body["files"] = deployment
        .modules
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .into();
    body["allow_net"] = deployment.allow_net.clone().into();
    body["bindings"] = deployment
        .bindings
        .iter()
        .map(|(binding, target)| (binding.clone(), json!({ "function": target })))
        .collect::<serde_json::Map<_, _>>()
        .into();
    if let Some(wasm) = &deployment.wasm {
        body["files"] = vec![deployment.summary.entry.clone()].into();
        body["executor"] = deployment.executor.as_str().into();
        body["wasm"] = json!({
            "bytes": wasm.binary.len(),
            "kind": match functions_runtime::WasmKind::of(&wasm.binary) {
                Some(functions_runtime::WasmKind::Component) => "component",
                _ => "module",
            },
        });
    }
    if let Some(code) = &deployment.runtime_code {
        let csharp = deployment.summary.language == functions_host::Language::CSharp;
        // A C# function's assemblies are its files; a Python function's packages are not.
        let assemblies = code.packages.keys().filter(|_| csharp);
        let files = code.files.keys().chain(assemblies);
        body["files"] = files.cloned().collect::<Vec<_>>().into();
        let file = deployment
            .summary
            .entry
            .split(':')
            .next()
            .unwrap_or_default();
        if let Some(source) = code.files.get(file) {
            body["source"] = source.as_str().into();
        }
        let runtime = if csharp { "csharp" } else { "python" };
        body[runtime] = json!({ "snapshot_bytes": code.snapshot.len() });
    }
    body["env"] = deployment.env.keys().cloned().collect::<Vec<_>>().into();
    Ok(json(StatusCode::OK, &body))
}

/// `DELETE /api/functions/{name}`: the function, its versions and its logs.
pub(crate) async fn delete(view: TenantView<'_>, name: &str) -> Result<HttpResponse, ApiError> {
    view.delete(name).await?;
    Ok(json(
        StatusCode::OK,
        &json!({ "name": name, "deleted": true }),
    ))
}

/// `POST /api/functions/{name}/token`: a new call address; the old one stops working.
pub(crate) async fn rotate_token(
    state: &State,
    view: TenantView<'_>,
    name: &str,
) -> Result<HttpResponse, ApiError> {
    let token = view.rotate_token(name).await?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "name": name,
            "call_url": format!("{}/call/{name}/{token}/", state.public_url),
        }),
    ))
}

/// `GET /api/functions/{name}/logs?after=ID&limit=N&wait=SECONDS`: log lines, oldest first.
/// With `wait`, when no line follows `after` yet, the answer waits (up to that long) for one; a
/// server that starts stopping answers at once (an empty page), so waiting holds no shutdown up.
pub(crate) async fn logs(
    view: TenantView<'_>,
    name: &str,
    query: Option<&str>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<HttpResponse, ApiError> {
    let parse = |key: &str, default: i64| -> Result<i64, ApiError> {
        query_param(query, key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("{key} must be an integer")))
            })
            .unwrap_or(Ok(default))
    };
    let after = parse("after", 0)?;
    let limit = parse("limit", 1000)?.clamp(1, MAX_LOG_PAGE as i64) as usize;
    let wait = super::calls::wait_of(query_param(query, "wait").as_deref())?;
    let mut lines = view.logs(name, after, limit as u32).await?;
    if lines.is_empty() && !wait.is_zero() {
        let mut follower = view.follow_logs(name, after);
        tokio::select! {
            next = tokio::time::timeout(wait, follower.next()) => {
                if let Ok(next) = next {
                    lines = next?;
                    lines.truncate(limit);
                }
            }
            () = super::stopped(stopping) => {}
        }
    }
    let lines: Vec<Value> = lines
        .into_iter()
        .map(|l| {
            json!({
                "id": l.id,
                "timestamp": humantime_ms(l.timestamp),
                "level": l.level,
                "source": l.source,
                "message": l.message,
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({ "logs": lines })))
}
