//! `functions-host`: the server (`serve`) and the CLI that talks to it.

mod client;
mod commands;
mod deploy;
mod guest_libraries;
mod scaffold;
mod server;
mod store;
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
        /// Directory of the embedded SQLite database.
        #[arg(long, default_value = ".functions")]
        data: PathBuf,
        /// Worker threads running invocations (default: the number of cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Cap on each function's stored logs, in bytes; the oldest lines go first.
        #[arg(long, default_value_t = store::DEFAULT_LOG_CAP_BYTES)]
        log_cap_bytes: u64,
    },
    /// Deploy a function from a source file, or a directory of them.
    Deploy(commands::DeployArgs),
    /// Invoke a function synchronously and print its response body.
    Invoke {
        name: String,
        /// JSON payload, or `-` to read it from standard input (default: none).
        payload: Option<String>,
    },
    /// List deployed functions.
    Ls,
    /// Delete a function, its versions and its logs.
    Rm { name: String },
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
        /// rust, go, zig, c, assemblyscript, typescript or javascript.
        #[arg(long)]
        lang: String,
    },
    /// Run a function (a source file, or a directory of them) once, locally, without a server.
    Run {
        path: PathBuf,
        /// JSON payload (default: none).
        payload: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            listen,
            data,
            workers,
            log_cap_bytes,
        } => {
            let workers =
                workers.unwrap_or_else(|| functions_runtime::EngineConfig::default().workers);
            let config = server::ServerConfig {
                listen,
                data_dir: data,
                workers,
                log_cap_bytes,
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(server::serve(config)))
        }
        Command::Deploy(args) => commands::deploy(&cli.server, &args),
        Command::Invoke { name, payload } => {
            commands::invoke(&cli.server, &name, payload.as_deref())
        }
        Command::Ls => commands::list(&cli.server),
        Command::Rm { name } => commands::remove(&cli.server, &name),
        Command::Logs { name, follow } => commands::logs(&cli.server, &name, follow),
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
