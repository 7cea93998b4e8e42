//! The management API under `/api/functions`: deploy, list, get, delete, logs.

use functions_runtime::CompileError;
use http::Request;
use http::StatusCode;
use hyper::body::Incoming;
use serde_json::Value;
use serde_json::json;

use super::ApiError;
use super::AppState;
use super::HttpResponse;
use super::error::json;
use super::read_body;
use super::registry::deployed_with;
use super::registry::function_with;
use crate::deploy;
use crate::deploy::DeployError;
use crate::deploy::DeployHints;
use crate::store::Deployment;

/// Most log lines one `GET .../logs` returns.
const MAX_LOG_PAGE: u32 = 10_000;

fn summary(state: &AppState, d: &Deployment) -> Value {
    json!({
      "name": d.name,
      "version": d.version,
      "language": d.language,
      "entry": d.entry,
      "isolation": d.isolation,
      "url": format!("http://{}/fn/{}/", state.listen, d.name),
      "call_url": format!("http://{}/call/{}/{}/", state.listen, d.name, d.call_token),
      "public": d.public,
      "limits": d.limits,
      "created_at": humantime_ms(d.created_at),
      "deployed_at": humantime_ms(d.deployed_at),
    })
}

/// RFC 3339 with milliseconds, in UTC.
pub fn humantime_ms(unix_millis: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_millis.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

pub fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then_some(v)
    })
}

/// `PUT /api/functions/{name}`: checks the code compiles, stores a new version, makes it current.
pub async fn deploy(
    state: &AppState,
    name: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    deploy::validate_name(name).map_err(|err| ApiError::bad_request(err.to_string()))?;
    let (parts, body) = request.into_parts();
    let body = read_body(body, super::MAX_DEPLOY_BYTES).await?;
    let query = parts.uri.query();
    let hints = DeployHints {
        lang: query_param(query, "lang"),
        entry: query_param(query, "entry"),
        isolation: query_param(query, "isolation"),
        executor: query_param(query, "executor"),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    };
    // Transpiling is CPU work: keep it off the threads that serve other requests.
    let new = tokio::task::block_in_place(|| deploy::parse(name, &hints, &body)).map_err(
        |err| match err {
            DeployError::Invalid(message) => ApiError::bad_request(message),
            DeployError::Compile(err) => compile_error(name, err),
        },
    )?;

    // Compile and link before anything is stored: bad code never replaces good code.
    let mut new = new;
    let compiled = match &mut new.wasm {
        Some(wasm) => {
            let module = state
                .engine
                .compile_wasm(wasm.binary.clone())
                .await
                .map_err(|err| compile_error(name, err))?;
            wasm.artifact = module.artifact().clone();
            Some(module)
        }
        None => {
            let candidate = Deployment {
                name: new.name.clone(),
                version: 0,
                language: new.language.clone(),
                entry: new.entry.clone(),
                modules: new.modules.clone(),
                env: new.env.clone(),
                isolation: new.isolation.clone(),
                allow_net: new.allow_net.clone(),
                wasm: None,
                executor: new.executor.clone(),
                limits: new.limits.clone(),
                public: new.public,
                call_token: String::new(),
                deployed_at: 0,
                created_at: 0,
            };
            let function = function_with(&candidate, None);
            if let Err(err) = state.engine.check(&function).await {
                return Err(compile_error(name, err));
            }
            None
        }
    };
    let deployment =
        tokio::task::block_in_place(|| state.store.deploy(new)).map_err(ApiError::internal)?;
    state.registry.install(deployed_with(&deployment, compiled));
    Ok(json(StatusCode::CREATED, &summary(state, &deployment)))
}

/// A 400 for code that does not compile or link, naming the file by its path in the function.
fn compile_error(name: &str, err: CompileError) -> ApiError {
    let root = format!("file:///{name}/");
    let file = err.file.strip_prefix(&root).unwrap_or(&err.file).to_owned();
    let message = err.message.replace(&root, "");
    ApiError::new(StatusCode::BAD_REQUEST, "compile_error", message)
        .with("file", file)
        .with("line", err.line)
        .with("column", err.column)
}

/// `GET /api/functions`
pub fn list(state: &AppState) -> Result<HttpResponse, ApiError> {
    let all = tokio::task::block_in_place(|| state.store.current_deployments())
        .map_err(ApiError::internal)?;
    let functions: Vec<Value> = all.iter().map(|d| summary(state, d)).collect();
    Ok(json(StatusCode::OK, &json!({ "functions": functions })))
}

/// `GET /api/functions/{name}`: the summary plus the source and env variable names.
pub fn get(state: &AppState, name: &str) -> Result<HttpResponse, ApiError> {
    let deployment = tokio::task::block_in_place(|| state.store.get(name))
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(name))?;
    let mut body = summary(state, &deployment);
    if let Some(entry) = deployment.modules.get(&deployment.entry) {
        body["source"] = (*entry.source).into();
    }
    body["files"] = deployment
        .modules
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .into();
    body["allow_net"] = deployment.allow_net.clone().into();
    if let Some(wasm) = &deployment.wasm {
        body["files"] = vec![deployment.entry.clone()].into();
        body["executor"] = deployment.executor.clone().into();
        body["wasm"] = json!({
            "bytes": wasm.binary.len(),
            "kind": match functions_runtime::WasmKind::of(&wasm.binary) {
                Some(functions_runtime::WasmKind::Component) => "component",
                _ => "module",
            },
        });
    }
    body["env"] = deployment.env.keys().cloned().collect::<Vec<_>>().into();
    Ok(json(StatusCode::OK, &body))
}

/// `DELETE /api/functions/{name}`: the function, its versions and its logs.
pub async fn delete(state: &AppState, name: &str) -> Result<HttpResponse, ApiError> {
    let deleted =
        tokio::task::block_in_place(|| state.store.delete(name)).map_err(ApiError::internal)?;
    if !deleted {
        return Err(ApiError::not_found(name));
    }
    state.registry.remove(name);
    Ok(json(
        StatusCode::OK,
        &json!({ "name": name, "deleted": true }),
    ))
}

/// `POST /api/functions/{name}/token`: a new call address; the old one stops working.
pub fn rotate_token(state: &AppState, name: &str) -> Result<HttpResponse, ApiError> {
    let token = tokio::task::block_in_place(|| state.store.rotate_call_token(name))
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(name))?;
    state.registry.set_call_token(name, &token);
    Ok(json(
        StatusCode::OK,
        &json!({
            "name": name,
            "call_url": format!("http://{}/call/{name}/{token}/", state.listen),
        }),
    ))
}

/// `GET /api/functions/{name}/logs?after=ID&limit=N`: log lines, oldest first.
pub async fn logs(
    state: &AppState,
    name: &str,
    query: Option<&str>,
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
    let limit = parse("limit", 1000)?.clamp(1, MAX_LOG_PAGE as i64) as u32;
    if state.registry.get(name).is_none() {
        return Err(ApiError::not_found(name));
    }
    let lines = tokio::task::block_in_place(|| state.store.logs(name, after, limit))
        .map_err(ApiError::internal)?;
    let lines: Vec<Value> = lines
    .into_iter()
    .map(|l| json!({ "id": l.id, "timestamp": humantime_ms(l.timestamp), "level": l.level, "message": l.message }))
    .collect();
    Ok(json(StatusCode::OK, &json!({ "logs": lines })))
}
