//! `inbox`: look at and act on a durable inbox: status, list, show, retry, purge. Prints ids,
//! kinds, states, times and error codes only, never a body.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use suki_ambient_core::{EncounterId, EventKind, SessionId, UnixMillis};
use suki_ambient_inbox::display::{MAX_TEXT, clean, clean_or_dash, next_run, relative, short};
use suki_ambient_inbox::{
    Actor, DeliveryRecord, Inbox, Selection, State, StoreError, ops::DeadFilter, store::Dialect,
};

use crate::Failure;

#[derive(Subcommand, Debug)]
pub(crate) enum Action {
    /// Create the inbox (its tables) at the URL, or migrate an existing one. The other
    /// commands open an existing inbox only: a mistyped path creates nothing.
    Init,
    /// The inbox's schema migrations, in order: their files and checksums, or with --print
    /// their SQL, for applying them with your own migration tool (then build the inbox with
    /// `migrate(false)`). Needs no --url.
    Migrations {
        /// Print the SQL of every migration, in order.
        #[arg(long)]
        print: bool,
        /// Postgres's migrations (default: SQLite's, or the --url's kind).
        #[arg(long)]
        postgres: bool,
    },
    /// Rows by state and the age of the oldest unfinished one.
    Status,
    /// Rows, newest first.
    List {
        /// Only rows in this state.
        #[arg(long, value_enum, ignore_case = true, conflicts_with = "kind")]
        state: Option<StateArg>,
        /// Only sessions that ended without a note, of this kind (the visits to document
        /// another way), newest first.
        #[arg(long, value_enum, ignore_case = true)]
        kind: Option<NoNoteArg>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One row.
    Show {
        /// The row id.
        id: i64,
    },
    /// Everything known about one visit: the rows of a session or encounter id, each
    /// attempt and its outcome, operators' actions, and the reconciler's expectation.
    Trace {
        /// A session id or an encounter id.
        id: String,
    },
    /// Make a dead row (or the dead rows that match) due now, with a new round of attempts (its
    /// attempt count and timeline kept).
    Retry {
        /// The row id.
        #[arg(conflicts_with_all = ["dead", "code", "since"], required_unless_present = "dead")]
        id: Option<i64>,
        /// The dead rows (all, or those matching --code and --since).
        #[arg(long)]
        dead: bool,
        /// Only dead rows whose error code starts with this (e.g. `fetch_contents_401`).
        #[arg(long, requires = "dead")]
        code: Option<String>,
        /// Only rows that died within this long (e.g. `2h`).
        #[arg(long, value_parser = parse_age, requires = "dead")]
        since: Option<Duration>,
        /// Show how many rows it would retry; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Make the rows processed within --since (or the one row --id) due again (after a
    /// handler bug was fixed); discarded rows stay discarded.
    Replay {
        /// How far back (by when they were processed), e.g. `2h`.
        #[arg(long, value_parser = parse_age, required_unless_present = "id", conflicts_with = "id")]
        since: Option<Duration>,
        /// One done row, by id.
        #[arg(long)]
        id: Option<i64>,
        /// Only rows of this kind (completed, failed, timed_out, cancelled, unknown).
        #[arg(long, value_parser = parse_kind, conflicts_with = "id")]
        kind: Option<EventKind>,
        /// Show how many rows it would replay; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Mark a dead or pending row as never to be processed (kept, marked `discarded`).
    Discard {
        /// The row id.
        id: i64,
        /// Why (kept in the row's timeline and the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Stop every worker of this inbox claiming (all rows, or one kind) until resumed;
    /// webhooks are still stored. Health says `paused`.
    Pause {
        /// Only this kind.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<EventKind>,
        /// Why (shown with the pause).
        #[arg(long)]
        reason: Option<String>,
    },
    /// End a pause.
    Resume {
        /// The kind paused (default: the pause of the whole inbox).
        #[arg(long, value_parser = parse_kind)]
        kind: Option<EventKind>,
    },
    /// Re-seal every stored body under the current key (the first of SUKI_INBOX_KEYS, comma-
    /// separated base64): those in clear and those under older keys, a batch at a time, online
    /// and resumable. Once it reports none left under an old key, that key can be removed.
    Rekey {
        /// Rows per transaction.
        #[arg(long, default_value_t = 500)]
        batch: u32,
    },
    /// The audit log: every operator action (console, CLI, API), oldest first.
    Audit {
        /// Only entries within this long (e.g. `30d`; default: all).
        #[arg(long, value_parser = parse_age)]
        since: Option<Duration>,
        /// At most this many, the newest (it says when there are more).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Walk the log's chain instead, checking each entry's MAC with the audit key
        /// (SUKI_AUDIT_KEY, or derived from SUKI_INBOX_KEYS): exits 1 and names the first entry
        /// that was changed, removed, blanked or re-chained without the key.
        #[arg(long, conflicts_with_all = ["since", "checkpoint"])]
        verify: bool,
        /// With --verify: also compare with a checkpoint kept from `--checkpoint` (a file):
        /// entries removed from the end since are found.
        #[arg(long, requires = "verify")]
        since_checkpoint: Option<std::path::PathBuf>,
        /// Print the newest entry's id and MAC as JSON, to keep outside the database (for
        /// `--verify --since-checkpoint FILE` later).
        #[arg(long, conflicts_with_all = ["since"])]
        checkpoint: bool,
    },
    /// Serve the inbox console (dashboard, timelines, dead letters, retry, replay, discard,
    /// pause) until Ctrl-C. The operator's token comes from SUKI_CONSOLE_TOKEN, an optional
    /// read-only viewer's token from SUKI_CONSOLE_VIEWER_TOKEN (each at least 16 characters).
    Console {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: String,
        /// The operator token's name in the audit log.
        #[arg(long, default_value = "operator")]
        operator_name: String,
        /// The viewer token's name in the audit log.
        #[arg(long, default_value = "viewer")]
        viewer_name: String,
    },
    /// Delete done rows completed longer ago than this (e.g. `7d`, `12h`).
    Purge {
        /// How old.
        #[arg(long, value_parser = parse_age)]
        older_than: Duration,
    },
}

/// A state, for `--state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum StateArg {
    Pending,
    Running,
    Done,
    Dead,
}

impl From<StateArg> for State {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Pending => State::Pending,
            StateArg::Running => State::Running,
            StateArg::Done => State::Done,
            StateArg::Dead => State::Dead,
        }
    }
}

/// A kind of session without a note, for `--kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum NoNoteArg {
    Failed,
    TimedOut,
    Cancelled,
}

impl From<NoNoteArg> for EventKind {
    fn from(k: NoNoteArg) -> Self {
        match k {
            NoNoteArg::Failed => EventKind::Failed,
            NoNoteArg::TimedOut => EventKind::TimedOut,
            NoNoteArg::Cancelled => EventKind::Cancelled,
        }
    }
}

/// An event kind's stored spelling (`completed`, `failed`, `timed_out`, `cancelled`, `unknown`).
pub(crate) fn parse_kind(text: &str) -> Result<EventKind, String> {
    EventKind::parse(&text.to_ascii_lowercase().replace('-', "_"))
        .ok_or_else(|| "expected completed, failed, timed_out, cancelled or unknown".to_owned())
}

/// What a pause or resume did: `{"paused": …, "changed": …}` with `--json`, else `text()`.
fn print_pause(paused: bool, changed: bool, json: bool, text: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "paused": paused, "changed": changed })
        );
    } else {
        println!("{}", text());
    }
}

/// Who acts, for the audit log: the name given with `--actor` or `SUKI_ACTOR` (cleaned, at
/// most 64 characters), on this host. None given: refused, because the audit log must name a
/// person (an OS user is `root` or `unknown` in a container).
pub(crate) fn cli_actor(actor: Option<&str>) -> Result<Actor, Failure> {
    let user = actor
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            Failure(
                "who is acting? pass --actor NAME or set SUKI_ACTOR (the audit log records who \
             did each action)"
                    .into(),
            )
        })?;
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    Ok(Actor::new(
        clean(user, 64),
        format!("cli@{}", clean(&host, 64)),
    ))
}

/// The time `ago` before now.
fn ago(ago: Duration) -> UnixMillis {
    UnixMillis(
        UnixMillis::now()
            .0
            .saturating_sub(suki_ambient_core::time::millis(ago)),
    )
}

/// Does `action` as the CLI's user, or with `dry_run` only counts; prints how many rows it
/// changed (`done`: "due now") or would change (`verb`: "retry").
async fn act(
    inbox: &Inbox,
    actor: Option<&str>,
    action: suki_ambient_inbox::Action,
    dry_run: bool,
    (verb, done, key): (&str, &str, &str),
    json: bool,
) -> Result<u64, Failure> {
    let n = if dry_run {
        inbox.preview(&action).await?
    } else {
        inbox.act(&cli_actor(actor)?, action).await?
    };
    if json {
        println!("{}", serde_json::json!({ key: n, "dry_run": dry_run }));
    } else if dry_run {
        println!("would {verb} {n} row(s) (dry run: nothing changed)");
    } else {
        println!("{n} row(s) {done}");
    }
    Ok(n)
}

/// `7d`, `12h`, `30m`, `90s` (humantime's forms).
pub(crate) fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 7d, 12h, 30m)"))
}

/// Opens the inbox at `url` if there is one (never creating it), with the keys of the
/// environment: SUKI_INBOX_KEYS seals what the CLI writes (as the application's inbox does; a
/// CLI without them refuses to write beside sealed rows) and SUKI_AUDIT_KEY chains the audit
/// log (else the key derived from SUKI_INBOX_KEYS).
pub(crate) async fn open(url: &str) -> Result<Inbox, Failure> {
    let mut inbox = Inbox::open(url).await.map_err(|e| match e {
        StoreError::NotFound { .. } => Failure(format!(
            "{e} (check the path or database; `suki-ambient inbox --url URL init` creates one)"
        )),
        e => Failure(format!("cannot open the inbox: {e}")),
    })?;
    if let Some(keys) = suki_ambient_inbox::Keys::from_env("SUKI_INBOX_KEYS")
        .map_err(|e| Failure(format!("SUKI_INBOX_KEYS: {e}")))?
    {
        inbox = inbox.with_keys(keys);
    }
    if let Some(key) = suki_ambient_inbox::AuditKey::from_env("SUKI_AUDIT_KEY")
        .map_err(|e| Failure(format!("SUKI_AUDIT_KEY: {e}")))?
    {
        inbox = inbox.with_audit_key(key);
    }
    Ok(inbox)
}

/// A write refused for want of keys, said for the CLI's user.
fn keys_needed(err: StoreError) -> Failure {
    match err {
        StoreError::NoCurrentKey => Failure(
            "this inbox holds sealed bodies and SUKI_INBOX_KEYS is not set: the CLI writes \
             nothing in clear beside them (set SUKI_INBOX_KEYS to the inbox's keys, as the \
             application's)"
                .into(),
        ),
        err => Failure(err.to_string()),
    }
}

/// Why `inbox retry ID` changed nothing: the row's state, and what to do instead.
async fn why_not_retried(inbox: &Inbox, id: i64) -> Result<String, Failure> {
    let Some(row) = inbox.get(id).await? else {
        return Ok(format!("row {id} was not retried: there is no row {id}"));
    };
    let state = row.state.as_str();
    Ok(match row.state {
        State::Done if row.last_error.as_deref() == Some("discarded") => {
            format!("row {id} was not retried: it was discarded and its body has been erased since")
        }
        State::Done => format!(
            "row {id} was not retried: it is done (retry takes dead or pending rows); to run it \
             again, `suki-ambient inbox replay --id {id}`"
        ),
        State::Running => format!(
            "row {id} was not retried: it is running now (a worker holds it); wait for its outcome"
        ),
        _ => format!("row {id} was not retried: it is {state}"),
    })
}

/// `init`: the one command that creates an inbox.
async fn init(url: &str, json: bool) -> Result<ExitCode, Failure> {
    let inbox = Inbox::connect(url)
        .await
        .map_err(|e| Failure(format!("cannot create the inbox: {e}")))?;
    let c = inbox.status().await?.counts;
    if json {
        println!("{}", serde_json::json!({ "initialized": true }));
    } else {
        println!(
            "inbox ready ({} row(s))",
            c.pending + c.running + c.done + c.dead
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `migrations`: the inbox's migrations (names and checksums, or their SQL).
fn migrations(dialect: Dialect, print: bool, json: bool) -> ExitCode {
    let all = suki_ambient_inbox::store::migrations(dialect);
    if print {
        for m in all {
            println!(
                "-- suki-ambient-inbox {} (sha256 {})\n{}",
                m.file_name(),
                m.checksum(),
                m.sql.trim_end()
            );
            println!();
        }
    } else if json {
        let list: Vec<_> = all
            .iter()
            .map(|m| {
                serde_json::json!({
                    "version": m.version,
                    "file": m.file_name(),
                    "sha256": m.checksum(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        for m in all {
            println!("{}  {}", m.file_name(), m.checksum());
        }
    }
    ExitCode::SUCCESS
}

pub(crate) async fn run(
    url: Option<&str>,
    actor: Option<&str>,
    action: Action,
    json: bool,
) -> Result<ExitCode, Failure> {
    if let Action::Migrations { print, postgres } = action {
        let postgres = postgres || url.is_some_and(|u| u.starts_with("postgres"));
        let dialect = if postgres {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        };
        return Ok(migrations(dialect, print, json));
    }
    let url = url.ok_or_else(|| {
        Failure(
            "the inbox's URL is required: --url or SUKI_INBOX_URL (sqlite://… or postgres://…)"
                .into(),
        )
    })?;
    let inbox = match action {
        Action::Init => return init(url, json).await,
        _ => open(url).await?,
    };
    match action {
        // Returned above: the only commands that need no open inbox.
        Action::Init | Action::Migrations { .. } => {}
        Action::Status => {
            let status = inbox.status().await?;
            let pauses = inbox.pauses().await?;
            let keys = inbox.key_counts().await?;
            let destinations = inbox.destinations().await?;
            if json {
                let mut value = serde_json::to_value(&status)?;
                value["paused"] = serde_json::to_value(&pauses)?;
                value["destinations"] = serde_json::to_value(&destinations)?;
                value["bodies"] = keys
                    .iter()
                    .map(|(key, n)| serde_json::json!({ "key_id": key, "rows": n }))
                    .collect();
                println!("{value}");
            } else {
                for p in &pauses {
                    println!(
                        "PAUSED   {} by {} {}{}",
                        p.kind.as_ref().map_or("all kinds", |k| k.as_str()),
                        clean(&p.paused_by, MAX_TEXT),
                        relative(p.paused_at, UnixMillis::now()),
                        p.reason
                            .as_deref()
                            .map(|r| format!(": {}", clean(r, MAX_TEXT)))
                            .unwrap_or_default()
                    );
                }
                let c = &status.counts;
                for (state, n) in [
                    ("pending", c.pending),
                    ("running", c.running),
                    ("done", c.done),
                    ("dead", c.dead),
                ] {
                    println!("{state:<8} {n}");
                }
                match status.oldest_unfinished_age {
                    Some(age) => println!("oldest unfinished: {} ago", short(age)),
                    None => println!("oldest unfinished: none"),
                }
                for (key, n) in &keys {
                    match key {
                        None => println!("bodies in clear: {n}"),
                        Some(key) => {
                            println!("bodies encrypted under key {}: {n}", clean(key, 32))
                        }
                    }
                }
                // The destinations the workers found down (and back since).
                for d in &destinations {
                    println!(
                        "{} {}",
                        if d.up { "UP      " } else { "DOWN    " },
                        suki_ambient_inbox::display::destination(d, UnixMillis::now())
                    );
                }
            }
        }
        Action::List { state, kind, limit } => {
            let rows = match kind {
                Some(kind) => inbox.without_note(kind.into(), limit).await?,
                None => inbox.list(state.map(State::from), limit).await?,
            };
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                print_table(&rows, UnixMillis::now());
            }
        }
        Action::Show { id } => {
            let Some(row) = inbox.get(id).await? else {
                return Err(Failure(format!("no row {id}")));
            };
            if json {
                println!("{}", serde_json::to_string(&row)?);
            } else {
                print_row(&row, UnixMillis::now());
            }
        }
        Action::Trace { id } => {
            let trace = inbox.trace(&id).await?;
            inbox
                .act(
                    &cli_actor(actor)?,
                    suki_ambient_inbox::Action::ViewTimeline { target: id.clone() },
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string(&trace)?);
            } else if trace.is_empty() {
                println!("nothing known about {}", clean(&id, MAX_TEXT));
            } else {
                let now = UnixMillis::now();
                for line in suki_ambient_inbox::display::timeline(&trace, now) {
                    let row = line.row.map_or_else(|| "-".to_owned(), |r| r.to_string());
                    println!(
                        "{:<14}  row {row:<6}  {}",
                        relative(line.at, now),
                        line.what
                    );
                }
            }
            if trace.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Action::Retry {
            id,
            dead: _,
            code,
            since,
            dry_run,
        } => {
            let which = match (id, code, since) {
                (Some(id), _, _) => Selection::Id(id),
                (None, None, None) => Selection::Dead,
                (None, code, since) => {
                    let mut filter = DeadFilter::new();
                    if let Some(code) = code {
                        filter = filter.code_prefix(code);
                    }
                    if let Some(since) = since {
                        filter = filter.since(ago(since));
                    }
                    Selection::DeadMatching(filter)
                }
            };
            let retry = suki_ambient_inbox::Action::Retry(which);
            let n = act(
                &inbox,
                actor,
                retry,
                dry_run,
                ("retry", "due now", "retried"),
                json,
            )
            .await?;
            if n == 0
                && let Some(id) = id
            {
                return Err(Failure(why_not_retried(&inbox, id).await?));
            }
        }
        Action::Replay {
            since,
            id,
            kind,
            dry_run,
        } => {
            let action = match (id, since) {
                (Some(id), _) => suki_ambient_inbox::Action::ReplayRow { id },
                (None, since) => suki_ambient_inbox::Action::Replay {
                    since: ago(since.unwrap_or_default()),
                    kind,
                },
            };
            let n = act(
                &inbox,
                actor,
                action,
                dry_run,
                ("replay", "due again", "replayed"),
                json,
            )
            .await?;
            if n == 0
                && let Some(id) = id
            {
                let why = match inbox.get(id).await? {
                    None => "there is no such row".to_owned(),
                    Some(row) if row.state != State::Done => format!(
                        "it is {} (replay takes done rows; `inbox retry {id}` takes dead ones)",
                        row.state.as_str()
                    ),
                    Some(_) => "it was discarded, or its body was erased".to_owned(),
                };
                return Err(Failure(format!("row {id} was not replayed: {why}")));
            }
        }
        Action::Discard { id, reason } => {
            let reason = clean(reason.trim(), 500);
            if reason.is_empty() {
                return Err(Failure("--reason must say why".into()));
            }
            let action = suki_ambient_inbox::Action::Discard { id, reason };
            if act(
                &inbox,
                actor,
                action,
                false,
                ("discard", "discarded", "discarded"),
                json,
            )
            .await?
                == 0
            {
                return Err(Failure(format!(
                    "row {id} was not discarded: only a dead or pending row can be"
                )));
            }
        }
        Action::Pause { kind, reason } => {
            let reason = reason
                .map(|r| clean(r.trim(), 500))
                .filter(|r| !r.is_empty());
            let action = suki_ambient_inbox::Action::Pause { kind, reason };
            let changed = inbox.act(&cli_actor(actor)?, action).await? == 1;
            let what = kind.as_ref().map_or("the inbox", |k| k.as_str());
            print_pause(true, changed, json, || {
                if changed {
                    format!("paused {what}: no worker claims it from now on")
                } else {
                    format!("{what} was already paused")
                }
            });
        }
        Action::Resume { kind } => {
            let action = suki_ambient_inbox::Action::Resume { kind };
            let changed = inbox.act(&cli_actor(actor)?, action).await? == 1;
            let what = kind.as_ref().map_or("the inbox", |k| k.as_str());
            print_pause(false, changed, json, || {
                if changed {
                    format!("resumed {what}")
                } else {
                    format!("{what} was not paused")
                }
            });
        }
        Action::Rekey { batch } => {
            if std::env::var_os("SUKI_INBOX_KEYS").is_none() {
                return Err(Failure(
                    "set SUKI_INBOX_KEYS to the inbox's keys (base64, comma-separated, the new \
                     current key first)"
                        .into(),
                ));
            }
            let report = inbox
                .rekey(&cli_actor(actor)?, batch, |r| {
                    if !json {
                        eprintln!(
                            "examined {}: {} re-sealed, {} already current, {} under a key not given",
                            r.examined, r.resealed, r.current, r.missing_key
                        );
                    }
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{} row(s) re-sealed under the current key; {} already were; {} under a key not given (left as they are)",
                    report.resealed, report.current, report.missing_key
                );
            }
            if report.missing_key > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Action::Audit {
            checkpoint: true, ..
        } => match inbox.audit_checkpoint().await? {
            Some(checkpoint) => println!("{}", serde_json::to_string(&checkpoint)?),
            None => return Err(Failure("the audit log is empty: no checkpoint".into())),
        },
        Action::Audit {
            verify: true,
            since_checkpoint,
            ..
        } => {
            let report = match since_checkpoint {
                None => inbox.verify_audit().await?,
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        Failure(format!(
                            "cannot read the checkpoint {}: {e}",
                            path.display()
                        ))
                    })?;
                    let checkpoint: suki_ambient_inbox::audit::AuditCheckpoint =
                        serde_json::from_str(text.trim()).map_err(|_| {
                            Failure(format!(
                                "{} is not a checkpoint (`inbox audit --checkpoint` writes one)",
                                path.display()
                            ))
                        })?;
                    inbox.verify_audit_since(&checkpoint).await?
                }
            };
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                match &report.broken {
                    None => println!(
                        "audit chain intact: {} entries ({} checked by MAC, {} by plain hash before the chain was keyed, {} written before the chain); newest {}",
                        report.entries,
                        report.keyed,
                        report.unkeyed,
                        report.unchained,
                        report
                            .newest
                            .as_ref()
                            .map_or_else(|| "-".to_owned(), |(id, hash)| format!("#{id} {hash}"))
                    ),
                    Some(broken) => println!(
                        "audit chain BROKEN at entry #{}: {} ({} entries read)",
                        broken.id, broken.reason, report.entries
                    ),
                }
                if report.broken.is_none() && report.keyed == 0 && report.entries > 0 {
                    println!(
                        "warning: no entry is keyed: a database user could rewrite and re-chain this log unseen (give the inbox SUKI_INBOX_KEYS or SUKI_AUDIT_KEY)"
                    );
                }
            }
            if report.broken.is_some() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Action::Audit { since, limit, .. } => {
            let since = since.map_or(UnixMillis(0), ago);
            // Newest first; one more than asked, to say whether older entries were left out.
            let mut entries = inbox.audit(since, limit.saturating_add(1)).await?;
            let more = entries.len() > limit as usize;
            entries.truncate(limit as usize);
            if more {
                eprintln!(
                    "(the newest {limit} shown; older entries exist: raise --limit or narrow --since)"
                );
            }
            if json {
                println!("{}", serde_json::to_string(&entries)?);
            } else {
                let now = UnixMillis::now();
                println!(
                    "{:>6}  {:<14}  {:<16}  {:<20}  {:<13}  {:>6}  TARGET / DETAIL",
                    "ID", "WHEN", "WHO", "FROM", "ACTION", "ROWS"
                );
                for e in &entries {
                    println!(
                        "{:>6}  {:<14}  {:<16}  {:<20}  {:<13}  {:>6}  {} {}",
                        e.id,
                        relative(e.at, now),
                        clean(&e.actor, 32),
                        clean(&e.origin, 40),
                        clean(&e.action, 32),
                        e.rows,
                        clean_or_dash(e.target.as_deref()),
                        e.detail
                            .as_deref()
                            .map(|d| format!(
                                "({})",
                                suki_ambient_inbox::display::human_times(&clean(d, MAX_TEXT))
                            ))
                            .unwrap_or_default()
                    );
                }
                if entries.is_empty() {
                    println!("(no entries)");
                }
            }
        }
        Action::Console {
            bind,
            operator_name,
            viewer_name,
        } => {
            // The tokens are never printed: they come from the environment only.
            let token = |var: &str| match std::env::var(var) {
                Ok(token) if token.trim().len() >= 16 => Ok(Some(token.trim().to_owned())),
                Ok(_) => Err(Failure(format!(
                    "{var} must be at least 16 characters (e.g. `openssl rand -hex 24`)"
                ))),
                Err(_) => Ok(None),
            };
            let Some(operator) = token("SUKI_CONSOLE_TOKEN")? else {
                return Err(Failure(
                    "set SUKI_CONSOLE_TOKEN to the console's operator token, at least 16 \
                     characters (e.g. `openssl rand -hex 24`); SUKI_CONSOLE_VIEWER_TOKEN adds a \
                     read-only one"
                        .into(),
                ));
            };
            let mut access = suki_ambient_console::Access::new().operator(operator_name, operator);
            if let Some(viewer) = token("SUKI_CONSOLE_VIEWER_TOKEN")? {
                access = access.viewer(viewer_name, viewer);
            }
            let listener = tokio::net::TcpListener::bind(&bind)
                .await
                .map_err(|e| Failure(format!("cannot listen on {bind}: {e}")))?;
            println!(
                "inbox console on http://{}/ (Ctrl-C to stop)",
                listener.local_addr()?
            );
            let app = suki_ambient_console::router(inbox, access);
            // Idle and half-sent connections are closed, and at most 128 are served at once:
            // they cannot lock a signed-in person out.
            suki_ambient_axum::Server::new()
                .max_connections(128)
                .serve(listener, app, async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await;
        }
        Action::Purge { older_than } => {
            let n = inbox
                .act(
                    &cli_actor(actor)?,
                    suki_ambient_inbox::Action::Purge {
                        before: ago(older_than),
                    },
                )
                .await?;
            if json {
                println!("{}", serde_json::json!({ "purged": n }));
            } else {
                println!("{n} done row(s) purged");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An RFC 3339 time (`2026-11-30T10:00:00Z`), or how long ago (`10m`).
pub(crate) fn parse_time(text: &str) -> Result<UnixMillis, String> {
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        let since = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| format!("{text}: before 1970"))?;
        return Ok(UnixMillis(suki_ambient_core::time::millis(since)));
    }
    parse_age(text).map(ago).map_err(|_| {
        format!("{text}: expected an RFC 3339 time (2026-11-30T10:00:00Z) or an age (10m)")
    })
}

/// `reconcile expect`: registers an expected session.
pub(crate) async fn expect(
    url: &str,
    actor: Option<&str>,
    expected: suki_ambient_inbox::ExpectedSession,
    grace: Duration,
    json: bool,
) -> Result<ExitCode, Failure> {
    // The context is sealed like a body, under SUKI_INBOX_KEYS (`open`).
    let inbox = open(url).await?;
    let actor = cli_actor(actor)?;
    if expected.additional_info.is_some() {
        inbox.ensure_can_seal().await.map_err(keys_needed)?;
    }
    let first_check = UnixMillis(
        expected
            .ended_at
            .0
            .saturating_add(suki_ambient_core::time::millis(grace)),
    );
    let new = inbox
        .register_expected(&expected, first_check)
        .await
        .map_err(keys_needed)?;
    let session = clean(expected.session_id.as_str(), MAX_TEXT);
    inbox
        .act(
            &actor,
            suki_ambient_inbox::Action::Expected {
                session: session.clone(),
                new,
            },
        )
        .await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "registered": new, "session_id": session })
        );
    } else if new {
        println!(
            "expecting session {session}: first status check {}",
            relative(first_check, UnixMillis::now())
        );
    } else {
        println!("session {session} was already expected");
    }
    Ok(ExitCode::SUCCESS)
}

/// `reconcile`: sweeps the window through a reconciler, a line per session checked when stdout
/// is a terminal, then a summary (ids and statuses only).
pub(crate) async fn reconcile(
    url: &str,
    actor: Option<&str>,
    since: Duration,
    client: suki_ambient_client::AmbientClient,
    concurrency: usize,
    json: bool,
) -> Result<ExitCode, Failure> {
    use std::io::{IsTerminal, Write};
    use suki_ambient_inbox::{Reconciler, ops::CheckOutcome};

    // Recovered events go through the inbox's one write path: sealed under SUKI_INBOX_KEYS,
    // and refused (before any status is checked) by a CLI without keys beside sealed rows.
    let inbox = open(url).await?;
    let actor = cli_actor(actor)?;
    inbox.ensure_can_seal().await.map_err(keys_needed)?;
    let mut reconciler = Reconciler::builder(client, inbox.clone()).concurrency(concurrency);
    if !json && std::io::stdout().is_terminal() {
        reconciler = reconciler.on_check(|expected, result| {
            // The status is the API's text and the id the integrator's: printed cleaned.
            let line = match result {
                CheckOutcome::Recovered { status } => format!("recovered ({})", clean(status, 64)),
                CheckOutcome::AlreadyStored { status } => {
                    format!("already in the inbox ({})", clean(status, 64))
                }
                CheckOutcome::Again { status, .. } => {
                    format!("not ended yet ({})", clean(status, 64))
                }
                CheckOutcome::GaveUp { status } => format!("given up ({})", clean(status, 64)),
                _ => "checked".to_owned(),
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "{:<36}  {line}",
                clean(expected.session_id.as_str(), MAX_TEXT)
            );
            let _ = out.flush();
        });
    }
    let report = reconciler.build().sweep(since).await?;
    inbox
        .act(
            &actor,
            suki_ambient_inbox::Action::Reconciled {
                since: ago(since),
                checked: report.checked,
                stored: report.recovered,
            },
        )
        .await?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "checked": report.checked,
                "recovered": report.recovered,
                "already_stored": report.already_stored,
                "not_ended": report.again,
                "gave_up": report.gave_up,
            })
        );
    } else {
        println!(
            "checked {}: {} recovered, {} already in the inbox, {} not ended yet, {} given up",
            report.checked, report.recovered, report.already_stored, report.again, report.gave_up
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(rows: &[DeliveryRecord], now: UnixMillis) {
    println!(
        "{:>6}  {:<7}  {:<9}  {:<7}  {:<36}  {:>8}  {:<14}  LAST ERROR",
        "ID", "STATE", "KIND", "SOURCE", "SESSION", "ATTEMPTS", "NEXT RUN"
    );
    for r in rows {
        let next = next_run(r, now);
        // `Display` of an enum ignores width: the state is padded as a string.
        println!(
            "{:>6}  {:<7}  {:<9}  {:<7}  {:<36}  {:>8}  {:<14}  {}",
            r.id,
            r.state.as_str(),
            clean(r.kind.as_str(), MAX_TEXT),
            r.source.as_str(),
            clean_or_dash(r.session_id.as_ref().map(SessionId::as_str)),
            r.attempts,
            next,
            clean_or_dash(r.last_error.as_deref()),
        );
    }
    if rows.is_empty() {
        println!("(no rows)");
    }
}

fn print_row(r: &DeliveryRecord, now: UnixMillis) {
    let fields: [(&str, String); 14] = [
        ("id", r.id.to_string()),
        ("state", r.state.to_string()),
        ("kind", clean(r.kind.as_str(), MAX_TEXT)),
        ("source", r.source.to_string()),
        ("dedup key", clean(&r.dedup_key, MAX_TEXT)),
        (
            "session",
            clean_or_dash(r.session_id.as_ref().map(SessionId::as_str)),
        ),
        (
            "encounter",
            clean_or_dash(r.encounter_id.as_ref().map(EncounterId::as_str)),
        ),
        ("generated at", relative(r.generated_at, now)),
        ("received at", relative(r.received_at, now)),
        ("attempts", r.attempts.to_string()),
        ("next run", relative(r.run_after, now)),
        ("lease owner", clean_or_dash(r.lease_owner.as_deref())),
        ("last error", clean_or_dash(r.last_error.as_deref())),
        (
            "completed at",
            r.completed_at
                .map_or_else(|| "-".into(), |t| relative(t, now)),
        ),
    ];
    for (name, value) in fields {
        println!("{name:<13} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print_briefly() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_age("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_age("soon").is_err());
    }
}
