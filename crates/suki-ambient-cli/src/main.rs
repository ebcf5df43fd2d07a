//! `suki-ambient`: sign and verify Suki webhooks, send test deliveries, call the follow-up APIs,
//! run the local sandbox, and demo the whole flow.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod demo;
mod explain;
mod fhir;
mod inbox;
mod input;
mod net;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use suki_ambient_core::{EncounterId, SessionId, SignedHeaders, UnixMillis, Verifier};

use crate::input::{read_body, secret};

/// Sign, verify and send Suki Ambient webhooks; call the follow-up APIs; run a local sandbox.
///
/// Secrets come from SUKI_WEBHOOK_SECRET or --secret-file, never from the command line.
#[derive(Parser, Debug)]
#[command(name = "suki-ambient", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sign a body: print the `generated-at` and `X-API-Key` headers.
    Sign {
        /// The body file (`-` or absent: standard input).
        file: Option<PathBuf>,
        /// The `generated-at` to sign with (Unix ms; default: now).
        #[arg(long)]
        generated_at: Option<String>,
        /// Print a ready curl command posting the body to URL instead.
        #[arg(long, value_name = "URL")]
        curl: Option<String>,
        /// Read the secret from this file (trailing newline ignored).
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Verify a delivery: `ok` (exit 0), or the error code on the last line (exit 1).
    Verify {
        /// The raw body file (`-` or absent: standard input).
        file: Option<PathBuf>,
        /// The `generated-at` header as received (empty: absent).
        #[arg(long, allow_hyphen_values = true)]
        generated_at: String,
        /// The `X-API-Key` header as received (empty: absent).
        #[arg(long, allow_hyphen_values = true)]
        signature: String,
        /// The clock to check freshness against (Unix ms; default: now).
        #[arg(long)]
        now_ms: Option<u64>,
        /// Allowed distance from the clock, both ways (default 300000).
        #[arg(long, default_value_t = 300_000)]
        tolerance_ms: u64,
        /// On failure, say which common mistake would have made it match.
        #[arg(long)]
        explain: bool,
        /// Read the secret from this file (trailing newline ignored).
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Sign an event and POST it to a receiver, like Suki would; print the answer.
    Send {
        /// The receiver's URL.
        #[arg(long)]
        url: String,
        /// `completed`, `failed`, `timed-out`, `cancelled`, or a JSON file to send as is.
        #[arg(long, default_value = "completed")]
        event: String,
        /// The session id of a generated event (default: random).
        #[arg(long)]
        session: Option<String>,
        /// Read the secret from this file (trailing newline ignored).
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Call the follow-up APIs for a session: with a token (SUKI_TOKEN), or logging in with
    /// partner credentials (--partner-id and SUKI_PARTNER_TOKEN).
    Fetch {
        #[command(flatten)]
        api: ApiArgs,
        /// The session id.
        #[arg(long)]
        session: String,
        /// What to fetch.
        #[arg(long, value_enum, ignore_case = true, default_value_t = What::All)]
        what: What,
        /// Sent as `sdp_provider_id`.
        #[arg(long)]
        provider_id: Option<String>,
        /// Print the full JSON of each answer (this is patient data on a real account).
        #[arg(long)]
        json: bool,
    },
    /// Serve the local sandbox until Ctrl-C.
    Sandbox {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: String,
        /// Where to deliver webhooks.
        #[arg(long)]
        webhook_url: Option<String>,
        /// Read the secret from this file (trailing newline ignored).
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// Sign with SUKI_WEBHOOK_SECRET. Without this flag (or --secret-file) the sandbox refuses
        /// to start while that variable is set, so that a production secret never signs sandbox
        /// data by accident.
        #[arg(long)]
        use_env_secret: bool,
    },
    /// Run the whole flow in one process: sandbox, receiver, inbox, webhook, client.
    Demo,
    /// Look at and act on a durable inbox (`sqlite://…` or `postgres://…`): ids, kinds, states
    /// and error codes only, never a body.
    Inbox {
        /// The inbox's URL (every command but `migrations` needs it).
        #[arg(long, env = "SUKI_INBOX_URL")]
        url: Option<String>,
        /// JSON output.
        #[arg(long, global = true)]
        json: bool,
        /// Who acts, as the audit log records it (a person's name or login): every command
        /// that changes or records something refuses to run without it.
        #[arg(long, global = true, env = "SUKI_ACTOR")]
        actor: Option<String>,
        #[command(subcommand)]
        action: inbox::Action,
    },
    /// FHIR R4 write-back: the transaction Bundle of a completed session.
    Fhir {
        #[command(subcommand)]
        action: fhir::Action,
    },
    /// Re-check now, through Suki's status API, every expected session of an inbox that ended
    /// within --since and that no webhook or earlier poll resolved (given-up ones included);
    /// store the event of each one that ended. A line per session on a terminal, a summary at
    /// the end. `reconcile expect …` registers an expected session.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Reconcile {
        #[command(subcommand)]
        command: Option<ReconcileCommand>,
        #[command(flatten)]
        sweep: SweepArgs,
    },
}

/// `reconcile`'s subcommands.
#[derive(Subcommand, Debug)]
enum ReconcileCommand {
    /// Register a session the reconciler should expect a webhook for (as an application does
    /// with `Reconciler::register`): when none arrives, the reconciler polls its status a
    /// grace period after it ended.
    Expect {
        /// The inbox's URL.
        #[arg(long, env = "SUKI_INBOX_URL")]
        url: String,
        /// The session id.
        #[arg(long)]
        session: String,
        /// The encounter id.
        #[arg(long)]
        encounter: String,
        /// When the session ended: an RFC 3339 time (`2026-11-30T10:00:00Z`) or how long ago
        /// (`10m`); default now.
        #[arg(long)]
        ended_at: Option<String>,
        /// The provider to poll as.
        #[arg(long)]
        provider: Option<String>,
        /// A form-filling session (default ambient).
        #[arg(long)]
        form_filling: bool,
        /// The partner's context, a JSON object (what you send Suki as `additional_info`,
        /// e.g. `{"ehr_patient":"Patient/123"}`): the recovered event carries it, so that the
        /// session is placed in the chart like a delivered one. Sealed under SUKI_INBOX_KEYS
        /// when set.
        #[arg(long)]
        additional_info: Option<String>,
        /// How long after its end the first status check comes.
        #[arg(long, value_parser = inbox::parse_age, default_value = "5m")]
        grace: Duration,
        /// Who registers it, as the audit log records it (required).
        #[arg(long, env = "SUKI_ACTOR")]
        actor: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// `reconcile`'s own arguments (the sweep).
#[derive(clap::Args, Debug)]
struct SweepArgs {
    /// The inbox's URL.
    #[arg(long, env = "SUKI_INBOX_URL", required = true)]
    url: Option<String>,
    /// How far back (e.g. `2h`, `1d`).
    #[arg(long, value_parser = inbox::parse_age, default_value = "24h")]
    since: Duration,
    #[command(flatten)]
    api: ApiArgs,
    /// Status checks at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Who runs the sweep, as the audit log records it (required).
    #[arg(long, env = "SUKI_ACTOR")]
    actor: Option<String>,
    /// JSON summary.
    #[arg(long)]
    json: bool,
}

/// Where and as whom the follow-up APIs are called (`fetch`, `reconcile`): with a token
/// (SUKI_TOKEN), or logging in with partner credentials (--partner-id and SUKI_PARTNER_TOKEN).
#[derive(clap::Args, Debug)]
pub(crate) struct ApiArgs {
    /// The API base URL (a sandbox, a proxy); or use --env.
    #[arg(long, conflicts_with = "env", required_unless_present = "env")]
    pub(crate) base_url: Option<String>,
    /// One of Suki's environments.
    #[arg(long, value_enum, ignore_case = true)]
    pub(crate) env: Option<Env>,
    /// Log in as this partner, with the partner token from SUKI_PARTNER_TOKEN (instead of
    /// SUKI_TOKEN).
    #[arg(long)]
    pub(crate) partner_id: Option<String>,
}

/// Suki's environments, for `--env`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Env {
    /// `https://sdp.suki-stage.com`.
    Staging,
    /// `https://sdp.suki.ai`.
    Production,
}

/// What `fetch` fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum What {
    Status,
    Content,
    Transcript,
    StructuredData,
    All,
}

/// A one-line error for the user.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(err: E) -> Self {
        Self(err.to_string())
    }
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(Failure(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A closed pipe (`suki-ambient inbox status | head`) ends the program quietly, as it ends
/// `ls`: Rust's `println!` panics when stdout is closed, and that panic (only that one) exits
/// with success instead of printing a backtrace. (Resetting SIGPIPE would need `unsafe`, which
/// the workspace forbids.)
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

async fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Sign {
            file,
            generated_at,
            curl,
            secret_file,
            json,
        } => {
            let secret = secret(secret_file.as_deref())?;
            let body = read_body(file.as_deref())?;
            let at = match generated_at {
                Some(text)
                    if !text.is_empty()
                        && text.len() <= 19
                        && text.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    text
                }
                Some(text) => {
                    return Err(Failure(format!(
                        "--generated-at must be Unix time in milliseconds (digits only), got {text:?}"
                    )));
                }
                None => UnixMillis::now().to_string(),
            };
            let signature = suki_ambient_core::sign(&secret, &at, &body).to_hex();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"generated-at": at, "x-api-key": signature})
                );
            } else if let Some(url) = curl {
                let file_arg = match &file {
                    Some(p) if p.as_os_str() != "-" => format!("@{}", p.display()),
                    _ => "@-".to_owned(),
                };
                // Quoted for a POSIX shell: a URL or path holding a quote, `$` or `;` stays one word.
                println!(
                    "curl -sS -X POST {} -H 'Content-Type: application/json' -H 'generated-at: {at}' -H 'X-API-Key: {signature}' --data-binary {}",
                    net::shell_quote(&url),
                    net::shell_quote(&file_arg)
                );
            } else {
                println!("generated-at: {at}");
                println!("X-API-Key: {signature}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            file,
            generated_at,
            signature,
            now_ms,
            tolerance_ms,
            explain,
            secret_file,
            json,
        } => {
            let secret_text = input::secret_text(secret_file.as_deref())?;
            let secret = suki_ambient_core::WebhookSecret::from(secret_text.as_str());
            let body = read_body(file.as_deref())?;
            let now = now_ms.map_or_else(UnixMillis::now, UnixMillis);
            let verifier = Verifier::builder()
                .secret(secret)
                .tolerance(Duration::from_millis(tolerance_ms))
                .clock(suki_ambient_core::FixedClock::new(now))
                .max_body_bytes(usize::MAX)
                .build()?;
            let result = verifier.verify_parts(&generated_at, &signature, &body);
            let hints = match (&result, explain) {
                (Err(err), true) => {
                    explain::explain(err, &secret_text, &generated_at, &signature, &body, now)
                }
                _ => Vec::new(),
            };
            if json {
                let out = match &result {
                    Ok(v) => serde_json::json!({"ok": true, "secret_index": v.meta.secret_index}),
                    Err(e) => {
                        serde_json::json!({"ok": false, "error": e.code(), "message": e.to_string(), "hints": hints})
                    }
                };
                println!("{out}");
            } else {
                match &result {
                    Ok(_) => println!("ok"),
                    Err(e) => {
                        eprintln!("{e}");
                        for hint in &hints {
                            println!("hint: {hint}");
                        }
                        println!("{}", e.code());
                    }
                }
            }
            Ok(if result.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Send {
            url,
            event,
            session,
            secret_file,
            json,
        } => {
            let secret = secret(secret_file.as_deref())?;
            let body = net::event_body(&event, session)?;
            let headers = SignedHeaders::now(&secret, &body);
            let (status, answer) = net::post_signed(&url, &headers, body).await?;
            if let Some(hint) = suki_ambient_sandbox::not_delivered_hint(status) {
                return Err(Failure(format!(
                    "not delivered: {} answered {status}; {hint}",
                    net::display_url(&url)
                )));
            }
            if json {
                println!("{}", serde_json::json!({"status": status, "body": answer}));
            } else {
                println!("{status}");
                println!("{answer}");
            }
            Ok(if (200..300).contains(&status) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Fetch {
            api,
            session,
            what,
            provider_id,
            json,
        } => {
            let mut client = net::client(&api)?;
            if let Some(provider) = &provider_id {
                client = client.for_provider(provider)?;
            }
            net::fetch(&client, &session, what, json).await
        }
        Command::Sandbox {
            bind,
            webhook_url,
            secret_file,
            use_env_secret,
        } => {
            if secret_file.is_none() && !use_env_secret {
                return Err(Failure(
                    if std::env::var_os("SUKI_WEBHOOK_SECRET").is_some() {
                        "SUKI_WEBHOOK_SECRET is set: the sandbox signs synthetic data, so it takes \
                         that secret only with --use-env-secret (or pass --secret-file); a \
                         production secret must not sign sandbox data by accident"
                    } else {
                        "no webhook secret: pass --secret-file FILE (the receiver must share it), \
                         or set SUKI_WEBHOOK_SECRET and pass --use-env-secret"
                    }
                    .into(),
                ));
            }
            let secret = secret(secret_file.as_deref())?;
            demo::serve_sandbox(&bind, webhook_url, secret).await
        }
        Command::Demo => demo::run().await,
        Command::Fhir { action } => fhir::run(action).await,
        Command::Inbox {
            url,
            json,
            actor,
            action,
        } => inbox::run(url.as_deref(), actor.as_deref(), action, json).await,
        Command::Reconcile {
            command:
                Some(ReconcileCommand::Expect {
                    url,
                    session,
                    encounter,
                    ended_at,
                    provider,
                    form_filling,
                    additional_info,
                    grace,
                    actor,
                    json,
                }),
            ..
        } => {
            let ended_at = match ended_at.as_deref() {
                None => UnixMillis::now(),
                Some(text) => inbox::parse_time(text).map_err(Failure)?,
            };
            let mut expected = suki_ambient_inbox::ExpectedSession::ambient(
                SessionId::new(session),
                EncounterId::new(encounter),
                ended_at,
            );
            if let Some(provider) = provider {
                expected = expected.provider(provider);
            }
            if form_filling {
                expected = expected.form_filling();
            }
            if let Some(text) = additional_info {
                let info: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
                    .map_err(|_| Failure("--additional-info must be a JSON object".into()))?;
                expected = expected.additional_info(info);
            }
            inbox::expect(&url, actor.as_deref(), expected, grace, json).await
        }
        Command::Reconcile {
            command: None,
            sweep:
                SweepArgs {
                    url,
                    since,
                    api,
                    concurrency,
                    actor,
                    json,
                },
        } => {
            let url = url.ok_or_else(|| Failure("--url (or SUKI_INBOX_URL) is required".into()))?;
            inbox::reconcile(
                &url,
                actor.as_deref(),
                since,
                net::client(&api)?,
                concurrency,
                json,
            )
            .await
        }
    }
}
