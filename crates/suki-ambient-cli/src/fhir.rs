//! `fhir`: the FHIR R4 transaction Bundle of a completed session, from Suki's JSON in files;
//! writing it to a FHIR server with a strategy; what a server's CapabilityStatement makes the
//! `auto` strategy do; SMART Backend Services keys and their JWKS.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use suki_ambient_core::api::{NoteContent, StructuredData};
use suki_ambient_core::{SessionId, UnixMillis};
use suki_ambient_fhir::{
    BearerToken, DocStatus, EhrContext, FhirClient, FhirClientBuilder, Mapping, NoteType,
    OnConflict, Reference, SessionNote, SmartBackendAuth, SmartKey, TransactionBundle,
    WriteStrategy,
};

use crate::Failure;

/// The largest JSON file read (Suki's notes are tens of kilobytes).
const MAX_FILE: u64 = 16 * 1024 * 1024;

/// `fhir`'s subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum Action {
    /// Print the FHIR R4 transaction Bundle (JSON) for a session's note and structured data read
    /// from files (Suki's content and structured-data JSON); no network. The output is patient
    /// data when the input is.
    Bundle {
        #[command(flatten)]
        bundle: BundleArgs,
    },
    /// Map as `bundle` does and write it to a FHIR server with a strategy (one transaction, or
    /// one create per resource); print what each resource became (created, or an existing one
    /// matched). Auth: the bearer token in SUKI_FHIR_TOKEN, or SMART Backend Services
    /// (--smart-client-id, --smart-kid, --smart-key).
    Post {
        #[command(flatten)]
        bundle: BundleArgs,
        /// The FHIR server's base URL.
        #[arg(long, value_name = "URL")]
        fhir_url: String,
        /// How to write: from the server's CapabilityStatement (auto), one transaction, one
        /// create per resource, or the DocumentReference only.
        #[arg(long, value_enum, ignore_case = true, default_value_t = Strategy::Auto)]
        strategy: Strategy,
        #[command(flatten)]
        smart: SmartArgs,
        /// When the server already has different resources under the session's identifiers
        /// (another chart, a changed note): fail (the default), keep them, or supersede them.
        #[arg(long, value_enum, ignore_case = true, default_value_t = Conflict::Fail)]
        on_conflict: Conflict,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Read a FHIR server's CapabilityStatement and print what `post` (and the write-back)
    /// would do there with a strategy, and why. The token in SUKI_FHIR_TOKEN is sent when set.
    Capabilities {
        /// The FHIR server's base URL.
        #[arg(long, value_name = "URL")]
        base_url: String,
        /// The strategy to explain.
        #[arg(long, value_enum, ignore_case = true, default_value_t = Strategy::Auto)]
        strategy: Strategy,
    },
    /// The onboarding test for a new EHR: write one probe DocumentReference (labelled, status
    /// entered-in-error, no clinical content) for a test patient, twice with If-None-Exist, read
    /// it back, and print whether the server returns Location, honours If-None-Exist, keeps
    /// identifiers, and inlines the note or keeps it in a Binary. Exits 1 when the write-back
    /// cannot work safely there (identifiers not kept). Auth as `post`.
    Check {
        /// The FHIR server's base URL.
        #[arg(long, value_name = "URL")]
        fhir_url: String,
        /// A test patient (`Patient/123`): the probe is written to its chart.
        #[arg(long)]
        patient: String,
        #[command(flatten)]
        smart: SmartArgs,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Print the public JWK Set of a SMART Backend Services private key (PEM), to register
    /// with the EHR.
    Jwks {
        /// The private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC P-384).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The key id to register it under.
        #[arg(long)]
        kid: String,
    },
    /// Make a SMART Backend Services private key (PKCS#8 PEM, written with mode 0600; an
    /// existing file is never overwritten) and print its public JWK Set.
    Keygen {
        /// RS384 (RSA 2048) or ES384 (EC P-384).
        #[arg(long, value_enum, ignore_case = true, default_value_t = Alg::Es384)]
        alg: Alg,
        /// The key id to register it under.
        #[arg(long)]
        kid: String,
        /// Where to write the private key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// `--strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Strategy {
    Auto,
    Transaction,
    PerResource,
    DocumentOnly,
}

impl Strategy {
    fn write_strategy(self) -> WriteStrategy {
        match self {
            Self::Auto => WriteStrategy::Auto,
            Self::Transaction => WriteStrategy::Transaction,
            Self::PerResource => WriteStrategy::PerResource,
            Self::DocumentOnly => WriteStrategy::DocumentReferenceOnly,
        }
    }
}

/// `--on-conflict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Conflict {
    Fail,
    Keep,
    Supersede,
}

/// `--alg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Alg {
    Rs384,
    Es384,
}

/// SMART Backend Services, instead of SUKI_FHIR_TOKEN.
#[derive(clap::Args, Debug)]
pub(crate) struct SmartArgs {
    /// The client id the EHR registered.
    #[arg(long, env = "SUKI_FHIR_SMART_CLIENT_ID", requires_all = ["smart_kid", "smart_key"])]
    smart_client_id: Option<String>,
    /// The registered key's id.
    #[arg(long, env = "SUKI_FHIR_SMART_KID")]
    smart_kid: Option<String>,
    /// The private key (PEM file).
    #[arg(long, env = "SUKI_FHIR_SMART_KEY", value_name = "FILE")]
    smart_key: Option<PathBuf>,
    /// The scopes asked for (space-separated).
    #[arg(long, env = "SUKI_FHIR_SMART_SCOPES")]
    smart_scopes: Option<String>,
}

/// What `fhir bundle` maps.
#[derive(clap::Args, Debug)]
pub(crate) struct BundleArgs {
    /// The session's note: the JSON of `GET …/session/{id}/content`.
    #[arg(long)]
    content: PathBuf,
    /// The session's structured data: the JSON of `GET …/session/{id}/structured-data`.
    #[arg(long)]
    structured_data: Option<PathBuf>,
    /// The session id (the resources' identifiers are built from it).
    #[arg(long)]
    session: String,
    /// The Patient (`Patient/123`).
    #[arg(long)]
    patient: String,
    /// The Encounter (`Encounter/456`).
    #[arg(long)]
    encounter: Option<String>,
    /// The Practitioner the note is drafted for (`Practitioner/7`).
    #[arg(long)]
    practitioner: Option<String>,
    /// The session whose note this one replaces (`relatesTo` replaces).
    #[arg(long)]
    replaces: Option<String>,
    /// When Suki finished the note (the webhook's generated-at): an RFC 3339 time or how long
    /// ago (`10m`); default now.
    #[arg(long)]
    at: Option<String>,
    /// The note's document status.
    #[arg(long, value_enum, ignore_case = true, default_value_t = Status::Preliminary)]
    doc_status: Status,
    /// The note's LOINC type code (default 11506-3 Progress note).
    #[arg(long, value_name = "LOINC")]
    note_type: Option<String>,
    /// Write no Composition (for EHRs that take DocumentReference only).
    #[arg(long)]
    no_composition: bool,
    /// The code system of Suki's IMO codes.
    #[arg(long, default_value = Mapping::IMO_SYSTEM)]
    imo_system: String,
}

/// `--doc-status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Status {
    Preliminary,
    Final,
    Amended,
}

pub(crate) async fn run(action: Action) -> Result<ExitCode, Failure> {
    match action {
        Action::Bundle { bundle } => {
            let json = bundle_of(&bundle)?.to_json();
            println!("{}", String::from_utf8_lossy(&json));
            Ok(ExitCode::SUCCESS)
        }
        Action::Post {
            bundle,
            fhir_url,
            strategy,
            smart,
            on_conflict,
            json,
        } => {
            let bundle = bundle_of(&bundle)?;
            let builder =
                FhirClient::builder(fhir_url.as_str()).strategy(strategy.write_strategy());
            let client = authed(builder, &fhir_url, &smart)?.build()?;
            let policy = match on_conflict {
                Conflict::Fail => OnConflict::Fail,
                Conflict::Keep => OnConflict::Keep,
                Conflict::Supersede => OnConflict::Supersede,
            };
            let result = client
                .write_with(&bundle, policy)
                .await
                .map_err(|e| Failure(e.to_string()))?;
            if json {
                let entries: Vec<_> = result
                    .entries
                    .iter()
                    .map(|e| {
                        serde_json::json!({"resource_type": e.resource_type, "status": e.status, "location": e.location})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"created": result.created(), "matched": result.matched(), "corrected": result.corrected, "entries": entries})
                );
            } else {
                for entry in &result.entries {
                    let what = if entry.status == 201 {
                        "created"
                    } else {
                        "exists "
                    };
                    println!(
                        "{what} {:<18} {}",
                        entry.resource_type.unwrap_or("?"),
                        entry
                            .location
                            .as_deref()
                            .map(|l| suki_ambient_inbox::display::clean(l, 256))
                            .unwrap_or_default()
                    );
                }
                for old in &result.corrected {
                    println!("retired {}", suki_ambient_inbox::display::clean(old, 256));
                }
                println!(
                    "{} created, {} already there",
                    result.created(),
                    result.matched()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Capabilities { base_url, strategy } => {
            let token = std::env::var("SUKI_FHIR_TOKEN").unwrap_or_default();
            let client = FhirClient::builder(base_url)
                .strategy(strategy.write_strategy())
                .auth(BearerToken::new(token.trim()))
                .build()?;
            if strategy != Strategy::Transaction {
                let caps = client
                    .capabilities()
                    .await
                    .map_err(|e| Failure(e.to_string()))?;
                println!(
                    "server: FHIR {}, transactions {}",
                    caps.fhir_version
                        .as_deref()
                        .unwrap_or("(version not given)"),
                    if caps.transaction { "yes" } else { "no" }
                );
            }
            let plan = client.plan().await.map_err(|e| Failure(e.to_string()))?;
            print!("{plan}");
            Ok(ExitCode::SUCCESS)
        }
        Action::Check {
            fhir_url,
            patient,
            smart,
            json,
        } => {
            let patient =
                Reference::parse(&patient).map_err(|e| Failure(format!("--patient: {e}")))?;
            let client =
                authed(FhirClient::builder(fhir_url.as_str()), &fhir_url, &smart)?.build()?;
            let report = client
                .check(&patient)
                .await
                .map_err(|e| Failure(e.to_string()))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "probe": report.probe,
                        "returns_location": report.returns_location,
                        "honours_if_none_exist": report.honours_if_none_exist,
                        "keeps_identifiers": report.keeps_identifiers,
                        "content": report.content,
                        "keeps_hash": report.keeps_hash,
                    })
                );
            } else {
                print!("{report}");
            }
            Ok(if report.keeps_identifiers {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Action::Jwks { key, kid } => {
            let key = SmartKey::from_pem_file(&key, kid)?;
            println!("{}", key.jwks());
            Ok(ExitCode::SUCCESS)
        }
        Action::Keygen { alg, kid, out } => {
            let pem = SmartKey::generate_pem(match alg {
                Alg::Rs384 => "RS384",
                Alg::Es384 => "ES384",
            })?;
            let key = SmartKey::from_pem(&pem, kid)?;
            write_new_secret_file(&out, pem.as_bytes())?;
            eprintln!(
                "wrote the private key to {} (keep it secret); its public JWK Set, to register with the EHR:",
                out.display()
            );
            println!("{}", key.jwks());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `builder` with SMART Backend Services when `smart` names a client, else the bearer token in
/// SUKI_FHIR_TOKEN.
fn authed(
    builder: FhirClientBuilder,
    fhir_url: &str,
    smart: &SmartArgs,
) -> Result<FhirClientBuilder, Failure> {
    if let (Some(client_id), Some(kid), Some(key)) =
        (&smart.smart_client_id, &smart.smart_kid, &smart.smart_key)
    {
        let key = SmartKey::from_pem_file(key, kid.as_str())?;
        let mut auth = SmartBackendAuth::builder(fhir_url, client_id.as_str(), key);
        if let Some(scopes) = &smart.smart_scopes {
            auth = auth.scopes(scopes.as_str());
        }
        return Ok(builder.auth(auth.build()?));
    }
    let token = std::env::var("SUKI_FHIR_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            Failure(
                "set SUKI_FHIR_TOKEN to the FHIR server's bearer token, or give --smart-client-id, --smart-kid and --smart-key".into(),
            )
        })?;
    Ok(builder.auth(BearerToken::new(token.trim())))
}

/// Writes `bytes` to a new file at `path`, readable by its owner only; an existing file is an
/// error (a key is never overwritten).
fn write_new_secret_file(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| Failure(format!("cannot create {}: {e}", path.display())))?;
    std::io::Write::write_all(&mut file, bytes)
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

/// The Bundle `args` describe.
fn bundle_of(args: &BundleArgs) -> Result<TransactionBundle, Failure> {
    let content: NoteContent = read_json(&args.content, "content")?;
    let structured: Option<StructuredData> = args
        .structured_data
        .as_deref()
        .map(|path| read_json(path, "structured data"))
        .transpose()?;
    let reference = |flag: &str, text: &str| {
        Reference::parse(text).map_err(|e| Failure(format!("--{flag}: {e}")))
    };
    let mut ehr = EhrContext::new(reference("patient", &args.patient)?);
    if let Some(encounter) = &args.encounter {
        ehr = ehr.encounter(reference("encounter", encounter)?);
    }
    if let Some(practitioner) = &args.practitioner {
        ehr = ehr.practitioner(reference("practitioner", practitioner)?);
    }
    if let Some(earlier) = &args.replaces {
        ehr = ehr.replaces(SessionId::new(earlier.as_str()));
    }
    let mut mapping = Mapping::default()
        .doc_status(match args.doc_status {
            Status::Preliminary => DocStatus::Preliminary,
            Status::Final => DocStatus::Final,
            Status::Amended => DocStatus::Amended,
        })
        .composition(!args.no_composition)
        .imo_system(args.imo_system.as_str());
    if let Some(code) = &args.note_type {
        mapping = mapping.note_type(known_note_type(code));
    }
    let at = match args.at.as_deref() {
        None => UnixMillis::now(),
        Some(text) => crate::inbox::parse_time(text).map_err(Failure)?,
    };
    let session = SessionId::new(args.session.as_str());
    let mut note = SessionNote::new(&session, &content, at);
    if let Some(structured) = &structured {
        note = note.structured_data(structured);
    }
    Ok(suki_ambient_fhir::transaction(&note, &ehr, &mapping)?)
}

/// A LOINC note type by code, with US Core's display for the codes it lists.
fn known_note_type(code: &str) -> NoteType {
    [
        NoteType::progress_note(),
        NoteType::consult_note(),
        NoteType::history_and_physical(),
        NoteType::discharge_summary(),
        NoteType::procedure_note(),
    ]
    .into_iter()
    .find(|t| t.code == code)
    .unwrap_or_else(|| NoteType::loinc(code, "Clinical note"))
}

/// A JSON file of at most [`MAX_FILE`] bytes as `T`; errors name the file and the JSON path,
/// never its content.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, Failure> {
    let cannot = |e: &dyn std::fmt::Display| {
        Failure(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_FILE + 1), &mut bytes)
        .map_err(|e| cannot(&e))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(cannot(&"larger than 16 MiB"));
    }
    suki_ambient_core::decode_json(&bytes).map_err(|e| cannot(&e))
}
