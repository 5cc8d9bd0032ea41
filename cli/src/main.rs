//! `hookline`: run the product locally, mint development tokens, check bot
//! definitions.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod chat;
mod console;
mod dead_letters;
mod demo_api;
mod listen;
mod serve;
mod this_machine;

use clap::{Parser, Subcommand};
use hookline_core::adapters::blobs::{LocalBlobs, S3Blobs};
use hookline_core::adapters::outbound::HttpOutbound;
use hookline_core::adapters::queue::{MemoryQueue, SqsQueue};
use hookline_core::adapters::store::{DynamoStore, MemoryStore};
use hookline_core::api;
use hookline_core::app::auth::dev_token::{self, DevTokenError};
use hookline_core::app::files::{Blobs, FileLimits};
use hookline_core::app::outbound;
use hookline_core::app::queue::Queue;
use hookline_core::app::store::Stores;
use hookline_core::definition::{
    self, ALLOW_PRIVATE_NETWORKS, DEMO_BOT, DEMO_BOT_FILE, LoadError, Loaded, Purpose, Registry, Severity,
};
use hookline_core::process::{self, ConfigError, Embedded, Settings, aws, sqs_worker, telemetry};
use hookline_core::signing::SigningKey;

/// Attempts of a job before it is dead-lettered.
const DELIVERY_RECEIVES: u32 = 5;

/// Why a command failed; printed as `hookline: <error>`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("bot definitions are not valid:\n{0}")]
    Definitions(#[from] LoadError),
    #[error(transparent)]
    Aws(#[from] hookline_core::Error),
    #[error(transparent)]
    Token(#[from] DevTokenError),
    #[error("no bot {0} in the definitions")]
    NoBot(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Limits(String),
    #[error("{0}")]
    Listen(String),
    #[error("{0}")]
    DeadLetters(String),
    #[error("{0}")]
    Chat(String),
}

#[derive(Parser)]
#[command(name = "hookline", version, about = "Webhook channel for virtual assistants")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every endpoint from one process (in-memory state unless --table).
    Serve {
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
        /// Bot definition file or directory [default: the built-in demo bot]
        #[arg(long, env = "HOOKLINE_BOTS")]
        bots: Option<PathBuf>,
        /// Keep state in this DynamoDB table instead of memory.
        #[arg(long, env = "HOOKLINE_TABLE")]
        table: Option<String>,
        /// A local AWS-compatible endpoint (DynamoDB, SQS, S3), e.g. http://127.0.0.1:5000
        #[arg(long, alias = "dynamodb-endpoint")]
        aws_endpoint: Option<String>,
        /// Create the table if it does not exist.
        #[arg(long, requires = "table")]
        create_table: bool,
        /// Queue work on this SQS FIFO queue (and run the worker on it) instead of in memory.
        #[arg(long, env = "HOOKLINE_QUEUE_URL", conflicts_with = "create_queue")]
        queue_url: Option<String>,
        /// Create an SQS FIFO queue NAME.fifo and its dead-letter queue NAME-dlq.fifo, and use it.
        #[arg(long, value_name = "NAME")]
        create_queue: Option<String>,
        /// Keep uploaded files in this directory [default: hookline-files in the system's temporary directory]
        #[arg(long, env = "HOOKLINE_FILES_DIR", conflicts_with = "bucket")]
        files_dir: Option<PathBuf>,
        /// Keep uploaded files in this S3 bucket instead of a directory.
        #[arg(long, env = "HOOKLINE_BUCKET")]
        bucket: Option<String>,
        /// Create the bucket if it does not exist.
        #[arg(long, requires = "bucket")]
        create_bucket: bool,
        /// Behind a trusted reverse proxy: the client's address is the one it
        /// appends to X-Forwarded-For [default: the connection's peer].
        #[arg(long)]
        behind_proxy: bool,
    },
    /// List the first jobs that failed every attempt, or move them all back
    /// for another try: from an SQS dead-letter queue, or from a running
    /// `hookline serve`'s in-process queue.
    DeadLetters {
        /// The dead-letter queue's URL.
        #[arg(long, required_unless_present = "serve", conflicts_with = "serve")]
        dlq_url: Option<String>,
        /// Move every message back to this queue (the worker's), in order per conversation.
        #[arg(long, requires = "dlq_url")]
        replay_to: Option<String>,
        /// A local AWS-compatible endpoint, e.g. http://127.0.0.1:5000
        #[arg(long, requires = "dlq_url")]
        aws_endpoint: Option<String>,
        /// A running `hookline serve` with its in-process queue, e.g. http://127.0.0.1:3000
        #[arg(long, value_name = "URL")]
        serve: Option<reqwest::Url>,
        /// With --serve: move them all back for another try.
        #[arg(long, requires = "serve")]
        replay: bool,
    },
    /// Chat with a bot in the terminal, local or deployed, on any v2 instance.
    Chat(ChatArgs),
    /// Receive POST_URL deliveries and event webhooks locally: check each
    /// signature, print a line per delivery, optionally forward them.
    Listen {
        #[arg(long, default_value = "127.0.0.1:4000")]
        addr: SocketAddr,
        /// Check signatures with this secret (whsec_...); repeat while rotating.
        #[arg(long, value_name = "WHSEC")]
        secret: Vec<String>,
        /// Check signatures with this bot's keys: its event webhooks', or
        /// with --instance that instance's POST_URL keys.
        #[arg(long, conflicts_with = "secret")]
        bot: Option<String>,
        #[arg(long, requires = "bot")]
        instance: Option<String>,
        /// Bot definition file or directory [default: the built-in demo bot]
        #[arg(long, requires = "bot")]
        config: Option<PathBuf>,
        /// Send each delivery on to this URL; the sender gets its answer.
        #[arg(long, value_name = "URL")]
        forward_to: Option<reqwest::Url>,
        /// Print each body in full after its line.
        #[arg(long)]
        raw: bool,
    },
    /// Print a signed JWT for calling a bot locally.
    Token {
        #[arg(long)]
        bot: String,
        #[arg(long)]
        user: String,
        /// clientId of the app to sign as [default: the bot's first app]
        #[arg(long)]
        app: Option<String>,
        /// Bot definition file or directory [default: the built-in demo bot]
        #[arg(long)]
        config: Option<PathBuf>,
        /// Private key (PEM) for RS256/RS512 apps.
        #[arg(long)]
        private_key: Option<PathBuf>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    /// Check bot definition files and directories; reports every problem with file, line and path.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also send each delivery URL (event webhooks, POST_URLs) a signed
        /// verification POST and report its answer.
        #[arg(long)]
        verify: bool,
    },
    /// Print the JSON Schema of the bot definition format.
    Schema,
}

/// `hookline chat`'s options.
#[derive(clap::Args)]
struct ChatArgs {
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: reqwest::Url,
    /// The bot [default: the definitions' first]
    #[arg(long)]
    bot: Option<String>,
    /// The instance (its hookInstance id) [default: the bot's first v2 instance]
    #[arg(long)]
    instance: Option<String>,
    #[arg(long, default_value = "chat-user")]
    user: String,
    /// The token to send [default: one signed for --user from the definitions]
    #[arg(long, env = "HOOKLINE_CHAT_TOKEN")]
    token: Option<String>,
    /// Bot definition file or directory [default: the built-in demo bot]
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where an asynchronous instance's replies can be read (a JSON array)
    /// [default with the demo bot: the demo's inbox]
    #[arg(long)]
    inbox: Option<reqwest::Url>,
    /// Print each request and answer as JSON too.
    #[arg(long)]
    raw: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve {
            addr,
            bots,
            table,
            aws_endpoint,
            create_table,
            queue_url,
            create_queue,
            files_dir,
            bucket,
            create_bucket,
            behind_proxy,
        } => {
            let queue = match (queue_url, create_queue) {
                (Some(url), _) => QueueChoice::Url(url),
                (None, Some(name)) => QueueChoice::Create(name),
                (None, None) => QueueChoice::Memory,
            };
            let files = match bucket {
                Some(name) => FilesChoice::Bucket { name, create: create_bucket },
                None => FilesChoice::Dir(files_dir.unwrap_or_else(|| std::env::temp_dir().join("hookline-files"))),
            };
            let storage = Storage { table, aws_endpoint, create_table, queue, files };
            report(serve(addr, bots, storage, behind_proxy).await)
        }
        Command::DeadLetters { dlq_url, replay_to, aws_endpoint, serve, replay } => {
            let source = match (serve, dlq_url) {
                (Some(url), _) => dead_letters::Source::Serve { url, replay },
                (None, dlq_url) => dead_letters::Source::Sqs {
                    dlq_url: dlq_url.unwrap_or_default(),
                    replay_to,
                    endpoint: aws_endpoint,
                },
            };
            report(dead_letters::run(source).await)
        }
        Command::Chat(args) => {
            let chatting = async { chat::run(chat_options(args)?).await.map_err(CliError::Chat) };
            report(chatting.await)
        }
        Command::Listen { addr, secret, bot, instance, config, forward_to, raw } => {
            let listening = async {
                let keys = listen_keys(&secret, bot.as_deref(), instance.as_deref(), config.as_deref())?;
                listen::run(listen::Options { addr, keys, forward_to, raw }).await.map_err(CliError::Listen)
            };
            report(listening.await)
        }
        Command::Token { bot, user, app, config, private_key, ttl } => {
            report(token(&bot, &user, app.as_deref(), config.as_deref(), private_key.as_deref(), ttl))
        }
        Command::Validate { paths, verify } => validate(&paths, verify).await,
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&definition::json_schema()).unwrap_or_default());
            ExitCode::SUCCESS
        }
    }
}

fn report(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hookline: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The definitions at `path`, or the built-in demo bot calling its API at `demo_api`.
fn load_registry(path: Option<&Path>, demo_api: &str) -> Result<Registry, LoadError> {
    match path {
        Some(path) => Registry::load(path, Purpose::Local),
        None => {
            let demo = DEMO_BOT.replace(demo_api::DEMO_API, demo_api);
            Registry::from_sources(&[(DEMO_BOT_FILE.into(), demo)], Purpose::Local)
        }
    }
}

enum FilesChoice {
    Dir(PathBuf),
    Bucket { name: String, create: bool },
}

enum QueueChoice {
    Memory,
    Url(String),
    Create(String),
}

/// Where `serve` keeps state, queues work and puts files.
struct Storage {
    table: Option<String>,
    aws_endpoint: Option<String>,
    create_table: bool,
    queue: QueueChoice,
    files: FilesChoice,
}

async fn serve(addr: SocketAddr, bots: Option<PathBuf>, storage: Storage, behind_proxy: bool) -> Result<(), CliError> {
    let Storage { table, aws_endpoint, create_table, queue, files } = storage;
    telemetry::init();
    let demo = bots.is_none();
    let registry = load_registry(bots.as_deref(), &format!("http://{addr}/demo"))?;
    let limits = serve::Limits::from_env().map_err(CliError::Limits)?;
    // Loaded only when something is kept on AWS (or its emulator).
    let uses_aws =
        table.is_some() || !matches!(queue, QueueChoice::Memory) || matches!(files, FilesChoice::Bucket { .. });
    let aws = match uses_aws {
        true => Some(aws::config(aws_endpoint.as_deref()).await),
        false => None,
    };
    let aws = || aws.as_ref().expect("loaded when something is kept on AWS");
    let (stores, storage) = match table {
        Some(table) => {
            // What saved turns owe is relayed from the table's stream.
            let store = DynamoStore::new(aws().dynamodb(), &table).reading_stream(aws().dynamodb_streams());
            if create_table {
                store.create_table().await?;
            }
            (Stores::of(Arc::new(store)), format!("DynamoDB table {table}"))
        }
        None => (Stores::of(Arc::new(MemoryStore::with_max_bytes(limits.memory_max_bytes))), "in memory".into()),
    };
    let settings = Settings::from_env()?;
    let (blobs, files_at): (Arc<dyn Blobs>, String) = match files {
        FilesChoice::Dir(dir) => {
            let at = format!("directory {}", dir.display());
            let local = Arc::new(LocalBlobs::new(dir));
            tokio::spawn(sweep_files(local.clone(), settings.files.clone()));
            (local, at)
        }
        FilesChoice::Bucket { name, create } => {
            let blobs = S3Blobs::new(aws().s3(), &name);
            if create {
                blobs.create_bucket().await?;
            }
            (Arc::new(blobs), format!("S3 bucket {name}"))
        }
    };
    let first_bot = registry.bots().map(|b| b.def.clone()).min_by(|a, b| a.id.cmp(&b.id));
    let sqs = match queue {
        QueueChoice::Memory => None,
        QueueChoice::Url(url) => Some(SqsQueue::new(aws().sqs(), url)),
        QueueChoice::Create(name) => {
            let client = aws().sqs();
            let visibility = Duration::from_secs(60);
            let (queue, dlq) = SqsQueue::create_fifo(&client, &name, visibility, DELIVERY_RECEIVES).await?;
            println!("Queue {} (dead letters: {})", queue.url(), dlq.url());
            Some(queue)
        }
    };
    // The in-process queue holds its worker weakly: `embedded` keeps it for the server's lifetime.
    let (embedded, queued, in_process) = match sqs {
        Some(sqs) => {
            let sqs = Arc::new(sqs);
            let embedded = Embedded::new(registry, stores, sqs.clone(), blobs, settings)?;
            tokio::spawn(sqs_worker::run(embedded.worker.clone(), sqs.clone()));
            (embedded, format!("SQS queue {}", sqs.url()), None)
        }
        None => {
            let memory = MemoryQueue::new(DELIVERY_RECEIVES);
            let queue: Arc<dyn Queue> = Arc::new(memory.clone());
            let embedded = Embedded::new(registry, stores, queue, blobs, settings)?;
            memory.start(&embedded.worker, embedded.worker.retry_base());
            let queued = if storage.starts_with("DynamoDB") {
                // Durable state beside a queue that is not: say so.
                "in memory: queued work is lost if the process stops; add --queue-url for durable queuing".into()
            } else {
                "in memory".into()
            };
            (embedded, queued, Some(memory))
        }
    };
    // Before serving: no write is made before its changes are read.
    embedded.start_relay().await?;
    tokio::spawn(process::sweep_idle_sessions(embedded.worker.clone(), process::IDLE_SWEEP_EVERY));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| CliError::Io { what: format!("cannot listen on {addr}"), source })?;

    println!("Hookline is listening on http://{addr} (state: {storage}; queue: {queued}; files: {files_at})");
    // The console and replaying jobs are for the developer at this machine.
    let here = addr.ip().is_loopback() && !behind_proxy;
    if here {
        println!("Console: http://{addr}/console");
    }
    if let Some(bot) = first_bot {
        println!("Talk to {} ({}):\n", bot.name, bot.id);
        match dev_token::sign(&bot, None, "demo-user", 24 * 3600, None) {
            Ok(token) => println!(
                "curl -s http://{addr}/chatbot/v2/webhook/{id} \\\n  -H 'Authorization: bearer {token}' \\\n  -H 'Content-Type: application/json' \\\n  -d '{{\"message\":{{\"type\":\"text\",\"val\":\"hello\"}},\"from\":{{\"id\":\"demo-user\"}}}}'\n",
                id = bot.id
            ),
            Err(e) => println!("(no ready token: {e}; see `hookline token --help`)\n"),
        }
    }
    let app = embedded.router();
    let app = if demo { app.merge(demo_api::router()) } else { app };
    let app = app.route("/metrics", axum::routing::get(metrics));
    let app = match here {
        true => {
            app.merge(console::router(embedded.webhook.bots.clone(), console::Deliveries::watching(&embedded.worker)))
        }
        false => app,
    };
    let app = match &in_process {
        Some(queue) if here => app.merge(dead_letters::router(queue.clone())),
        _ => app,
    };
    let app = api::with_client_ip(app, if behind_proxy { api::proxied_ip } else { api::peer_ip });
    // Stopping, the in-process queue's jobs get to finish (SQS keeps its own).
    let draining = in_process.clone();
    let drained = async move {
        while draining.as_ref().is_some_and(|queue| queue.backlog() > 0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    serve::serve(listener, app, &limits, drained).await;
    if let Some(left) = in_process.as_ref().map(MemoryQueue::backlog).filter(|&n| n > 0) {
        tracing::warn!(jobs = left, "stopped with in-process jobs unfinished: they are lost");
    }
    Ok(())
}

/// The process's counters, for Prometheus.
async fn metrics() -> impl axum::response::IntoResponse {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(axum::http::header::CONTENT_TYPE, content_type)], hookline_core::metrics::prometheus())
}

/// Removes, every ten minutes, the chunks of uploads whose token has expired
/// and files past their retention, as the bucket's lifecycle rules do in AWS.
async fn sweep_files(blobs: Arc<LocalBlobs>, limits: FileLimits) {
    let mut every = tokio::time::interval(Duration::from_secs(600));
    loop {
        every.tick().await;
        for (prefix, age) in [("uploads", limits.token_lifetime), ("files", limits.retention)] {
            if let Err(e) = blobs.remove_older_than(prefix, age).await {
                tracing::warn!(error = %e, prefix, "expired files were not removed");
            }
        }
    }
}

/// What `chat` talks to and as whom: the bot's webhook URL and a token,
/// minted from the definitions unless given.
fn chat_options(args: ChatArgs) -> Result<chat::Options, CliError> {
    let ChatArgs { url, bot, instance, user, token, config, inbox, raw } = args;
    let config = config.as_deref();
    let registry = load_registry(config, demo_api::DEMO_API)?;
    let first = || registry.bots().map(|b| b.id().to_string()).min();
    let bot_id = bot.or_else(first).ok_or_else(|| CliError::Chat("no bot in the definitions".into()))?;
    let token = match token {
        Some(token) => token,
        None => {
            let bot = registry.get(&bot_id).ok_or_else(|| CliError::NoBot(bot_id.clone()))?;
            dev_token::sign(&bot.def, None, &user, 3600, None)?
        }
    };
    let path = match &instance {
        Some(instance) => format!("chatbot/v2/webhook/{bot_id}/hookInstance/{instance}"),
        None => format!("chatbot/v2/webhook/{bot_id}"),
    };
    // Joined below it, a path such as an API stage (`.../prod`) is kept.
    let mut url = url;
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    let invalid = |e: <reqwest::Url as std::str::FromStr>::Err| CliError::Chat(format!("{url}: {e}"));
    let webhook = url.join(&path).map_err(invalid)?;
    // The demo's inbox: only `hookline serve`'s own demo, on this machine.
    let local = url.host_str().is_some_and(|h| matches!(h, "localhost" | "127.0.0.1" | "[::1]"));
    let inbox = match (inbox, config) {
        (Some(inbox), _) => Some(inbox),
        (None, None) if local => Some(url.join("demo/inbox").map_err(invalid)?),
        (None, _) => None,
    };
    let upload = url.join(&format!("api/attachments/file/{bot_id}/rtm")).map_err(invalid)?;
    Ok(chat::Options { webhook, upload, token, user, inbox, raw })
}

/// The keys `listen` checks signatures with: given secrets, or a bot's.
fn listen_keys(
    secrets: &[String],
    bot_id: Option<&str>,
    instance: Option<&str>,
    config: Option<&Path>,
) -> Result<Vec<SigningKey>, CliError> {
    let Some(bot_id) = bot_id else {
        return secrets
            .iter()
            .map(|s| SigningKey::parse(s).map_err(|e| CliError::Listen(format!("--secret: {e}"))))
            .collect();
    };
    let registry = load_registry(config, demo_api::DEMO_API)?;
    let bot = registry.get(bot_id).ok_or_else(|| CliError::NoBot(bot_id.into()))?;
    match instance {
        None => Ok(bot.signing_keys().to_vec()),
        Some(id) if bot.instance_by_id(id).is_some() => Ok(bot.post_url_keys(id).to_vec()),
        Some(id) => Err(CliError::Listen(format!("no instance {id} in bot {bot_id}"))),
    }
}

fn token(
    bot_id: &str,
    user: &str,
    app: Option<&str>,
    config: Option<&Path>,
    private_key: Option<&Path>,
    ttl: i64,
) -> Result<(), CliError> {
    let registry = load_registry(config, demo_api::DEMO_API)?;
    let bot = registry.get(bot_id).ok_or_else(|| CliError::NoBot(bot_id.into()))?;
    let pem = private_key
        .map(|path| {
            std::fs::read_to_string(path).map_err(|source| CliError::Io { what: path.display().to_string(), source })
        })
        .transpose()?;
    println!("{}", dev_token::sign(&bot.def, app, user, ttl, pem.as_deref())?);
    Ok(())
}

async fn validate(paths: &[PathBuf], verify: bool) -> ExitCode {
    let loaded = Loaded::from_paths(paths, Purpose::Validate);
    for diagnostic in &loaded.diagnostics {
        eprintln!("{diagnostic}");
    }
    let failed = |file: &str| loaded.diagnostics.iter().any(|d| d.file == file && d.severity == Severity::Error);
    for file in loaded.files.iter().filter(|f| !failed(f)) {
        println!("{file}: ok");
    }
    let mut ok = !loaded.diagnostics.iter().any(|d| d.severity == Severity::Error);
    if verify {
        ok &= verify_urls(&loaded.registry).await;
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Each bot's delivery URLs, verified: `true` when every one answered 2xx.
async fn verify_urls(registry: &Registry) -> bool {
    let outbound = HttpOutbound::new();
    let mut bots: Vec<_> = registry.bots().collect();
    bots.sort_by(|a, b| a.id().cmp(b.id()));
    let mut all_ok = true;
    for bot in bots {
        // As a deployment does: private addresses only with the setting's yes too.
        let allow_private = std::env::var(ALLOW_PRIVATE_NETWORKS).is_ok_and(|v| v.trim() == "true");
        for verified in outbound::verify_urls(&outbound, bot, allow_private).await {
            let answer = match &verified.outcome {
                Ok(status) => format!("answered {status}"),
                Err(reason) => format!("no answer: {reason}"),
            };
            let verdict = if verified.ok() { "verified" } else { "failed" };
            println!("{} {} {}: {verdict} ({answer})", bot.id(), verified.field, verified.url);
            all_ok &= verified.ok();
        }
    }
    all_ok
}
