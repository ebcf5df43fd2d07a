//! Fetches what a session produced from Suki's follow-up APIs and prints a summary (counts and
//! titles; the note text itself is patient data and is not printed).
//!
//! ```sh
//! SUKI_API_BASE_URL=https://sdp.suki-stage.com SUKI_TOKEN=... \
//!     cargo run -p examples --bin fetch_results -- <session-id> [<encounter-id>]
//! ```
//!
//! Env: `SUKI_API_BASE_URL` (default: staging), `SUKI_TOKEN` (required), `SUKI_PROVIDER_ID`
//! (optional, sent as `sdp_provider_id`).

use std::process::ExitCode;

use suki_ambient::client::AmbientClient;
use suki_ambient::{EncounterId, SessionId};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(session) = args.next() else {
        eprintln!("usage: fetch_results <session-id> [<encounter-id>]");
        return ExitCode::FAILURE;
    };
    let encounter = args.next();
    let Ok(token) = std::env::var("SUKI_TOKEN") else {
        eprintln!("error: set SUKI_TOKEN to an sdp_suki_token (from a partner login)");
        return ExitCode::FAILURE;
    };
    let base_url = std::env::var("SUKI_API_BASE_URL")
        .unwrap_or_else(|_| "https://sdp.suki-stage.com".to_owned());
    let mut builder = AmbientClient::builder().base_url(base_url).token(token);
    if let Ok(provider) = std::env::var("SUKI_PROVIDER_ID") {
        builder = builder.provider_id(provider);
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // In a receiver, `client.fetch_results(&completed_event)` follows the webhook's `_links`;
    // with only ids at hand, the typed calls do the same, here concurrently.
    let id = SessionId::from(session.as_str());
    let (status, contents, structured_data, transcript) = tokio::join!(
        client.session_status(&id),
        client.session_content(&id, false),
        client.session_structured_data(&id),
        client.session_transcript(&id),
    );
    let encounter_note = match &encounter {
        Some(e) => Some(
            client
                .encounter_content(&EncounterId::from(e.as_str()))
                .await,
        ),
        None => None,
    };
    let mut failed = false;
    let mut report = |what: &str, err: &suki_ambient::client::ClientError| {
        failed = true;
        eprintln!("{what}: {err}");
    };
    match &status {
        Ok(status) => println!("status: {}", status.status),
        Err(e) => report("status", e),
    }
    match &contents {
        Ok(note) => {
            println!("note: {} sections", note.summary.len());
            for section in &note.summary {
                println!("  - {}", section.title.as_deref().unwrap_or("(untitled)"));
            }
        }
        Err(e) => report("content", e),
    }
    match &structured_data {
        Ok(data) => {
            let dx = data
                .structured_data
                .diagnoses
                .as_ref()
                .map_or(0, |d| d.values.len());
            println!("structured data: {dx} diagnoses");
        }
        Err(e) => report("structured data", e),
    }
    match &transcript {
        Ok(t) => println!("transcript: {} segments", t.final_transcript.len()),
        Err(e) => report("transcript", e),
    }
    match &encounter_note {
        Some(Ok(note)) => println!("encounter note: {} sections", note.summary.len()),
        Some(Err(e)) => report("encounter content", e),
        None => {}
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
