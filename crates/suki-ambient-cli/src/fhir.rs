//! `fhir`: the FHIR R4 transaction Bundle of a completed session, from Suki's JSON in files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use suki_ambient_core::api::{NoteContent, StructuredData};
use suki_ambient_core::{SessionId, UnixMillis};
use suki_ambient_fhir::{
    BearerToken, DocStatus, EhrContext, FhirClient, Mapping, NoteType, Reference, SessionNote,
    TransactionBundle,
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
    /// Map as `bundle` does and POST the transaction to a FHIR server, with the bearer token in
    /// SUKI_FHIR_TOKEN; print what each entry became (created, or an existing one matched).
    Post {
        #[command(flatten)]
        bundle: BundleArgs,
        /// The FHIR server's base URL (the transaction endpoint).
        #[arg(long, value_name = "URL")]
        fhir_url: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
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
    #[arg(long, value_enum, default_value_t = Status::Preliminary)]
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
            json,
        } => {
            let bundle = bundle_of(&bundle)?;
            let token = std::env::var("SUKI_FHIR_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| {
                    Failure("set SUKI_FHIR_TOKEN to the FHIR server's bearer token".into())
                })?;
            let client = FhirClient::builder(fhir_url)
                .auth(BearerToken::new(token.trim()))
                .build()?;
            let result = client
                .post(&bundle)
                .await
                .map_err(|e| Failure(e.to_string()))?;
            if json {
                let entries: Vec<_> = result
                    .entries
                    .iter()
                    .map(|e| serde_json::json!({"status": e.status, "location": e.location}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"created": result.created(), "matched": result.matched(), "entries": entries})
                );
            } else {
                for (summary, entry) in bundle.entries().iter().zip(&result.entries) {
                    let what = if entry.status == 201 {
                        "created"
                    } else {
                        "exists "
                    };
                    println!(
                        "{what} {:<18} {}",
                        summary.resource_type,
                        entry
                            .location
                            .as_deref()
                            .map(|l| suki_ambient_inbox::display::clean(l, 256))
                            .unwrap_or_default()
                    );
                }
                println!(
                    "{} created, {} already there",
                    result.created(),
                    result.matched()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
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
