//! `send` and `fetch`: talking to receivers and to the follow-up APIs.

use std::process::ExitCode;
use std::time::Duration;

use suki_ambient_client::{AmbientClient, ClientError, Environment, PartnerLogin};
use suki_ambient_core::{SessionId, SignedHeaders, sample};

use crate::{ApiArgs, Env, Failure, What};

/// The body for `send --event`: a generated event, or a file's bytes as is.
pub(crate) fn event_body(event: &str, session: Option<String>) -> Result<Vec<u8>, Failure> {
    let session = session.unwrap_or_else(random_id);
    let encounter = random_id();
    let event = match event {
        "completed" => sample::completed(&session, &encounter),
        "failed" => sample::failed(&session, &encounter),
        "timed-out" => sample::timed_out(&session, &encounter),
        "cancelled" => sample::cancelled(&session, &encounter),
        file => {
            return std::fs::read(file).map_err(|e| {
                Failure(format!(
                    "--event must be completed, failed, timed-out, cancelled or a readable file; cannot read {file}: {e}"
                ))
            });
        }
    };
    Ok(event.to_vec())
}

fn random_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("cli-{:x}-{:x}", nanos, std::process::id())
}

/// POSTs a signed body; returns the status and the answer text.
pub(crate) async fn post_signed(
    url: &str,
    headers: &SignedHeaders,
    body: Vec<u8>,
) -> Result<(u16, String), Failure> {
    let parsed = reqwest::Url::parse(url).map_err(|_| Failure("--url is not a URL".into()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Failure(format!("not an http(s) URL: {}", display_url(url))));
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Failure(format!("HTTP client: {e}")))?;
    let mut request = http
        .post(parsed)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers.pairs() {
        request = request.header(name, value);
    }
    let shown = display_url(url);
    let response = request.send().await.map_err(|e| {
        if e.is_connect() {
            Failure(format!("cannot reach {shown}: connection failed"))
        } else if e.is_timeout() {
            Failure(format!("{shown} did not answer within 30 s"))
        } else {
            Failure(format!("request to {shown} failed"))
        }
    })?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    Ok((status, text))
}

/// A non-empty environment variable.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The client `--base-url`/`--env` and `--partner-id` (or SUKI_TOKEN) describe.
pub(crate) fn client(api: &ApiArgs) -> Result<AmbientClient, Failure> {
    let builder = match (&api.base_url, api.env) {
        (Some(url), _) => AmbientClient::builder().base_url(url),
        (None, Some(Env::Staging)) => AmbientClient::builder().environment(Environment::Staging),
        (None, Some(Env::Production)) => {
            AmbientClient::builder().environment(Environment::Production)
        }
        (None, None) => return Err(Failure("pass --base-url or --env".into())),
    };
    let builder = match &api.partner_id {
        Some(partner) => {
            let partner_token = env_var("SUKI_PARTNER_TOKEN").ok_or_else(|| {
                Failure("--partner-id needs the partner token in SUKI_PARTNER_TOKEN".into())
            })?;
            builder.auth(PartnerLogin::new(partner.clone(), partner_token))
        }
        None => builder.token(env_var("SUKI_TOKEN").ok_or_else(|| {
            Failure(
                "no API token: set SUKI_TOKEN, or pass --partner-id with SUKI_PARTNER_TOKEN".into(),
            )
        })?),
    };
    Ok(builder.build()?)
}

/// `fetch`: the chosen follow-up calls, printed as a summary or JSON.
pub(crate) async fn fetch(
    client: &AmbientClient,
    session: &str,
    what: What,
    json: bool,
) -> Result<ExitCode, Failure> {
    let id = SessionId::from(session);
    let wants = |w: What| what == w || what == What::All;
    let mut failed = false;
    let mut report = |name: &str,
                      result: Result<serde_json::Value, ClientError>,
                      summary: &dyn Fn(&serde_json::Value) -> String| {
        match result {
            Ok(value) if json => println!("{}", serde_json::json!({ name: value })),
            Ok(value) => println!("{name}: {}", summary(&value)),
            Err(err) => {
                failed = true;
                eprintln!("{name}: {err}");
            }
        }
    };
    if wants(What::Status) {
        let r = client
            .session_status(&id)
            .await
            .map(|v| serde_json::to_value(v).unwrap_or_default());
        report("status", r, &|v| {
            v["status"].as_str().unwrap_or("?").to_owned()
        });
    }
    if wants(What::Content) {
        let r = client
            .session_content(&id, false)
            .await
            .map(|v| serde_json::to_value(v).unwrap_or_default());
        report("content", r, &|v| {
            let titles: Vec<&str> = v["summary"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["title"].as_str())
                .collect();
            format!("{} sections ({})", titles.len(), titles.join(", "))
        });
    }
    if wants(What::Transcript) {
        let r = client
            .session_transcript(&id)
            .await
            .map(|v| serde_json::to_value(v).unwrap_or_default());
        report("transcript", r, &|v| {
            format!(
                "{} segments",
                v["final_transcript"].as_array().map_or(0, Vec::len)
            )
        });
    }
    if wants(What::StructuredData) {
        let r = client
            .session_structured_data(&id)
            .await
            .map(|v| serde_json::to_value(v).unwrap_or_default());
        report("structured-data", r, &|v| {
            format!(
                "{} diagnoses",
                v["structured_data"]["diagnoses"]["values"]
                    .as_array()
                    .map_or(0, Vec::len)
            )
        });
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A URL as it may be printed: without user-info, query or fragment (they can hold credentials
/// or tokens).
pub(crate) fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "<not a URL>".to_owned(),
    }
}

/// One word for a POSIX shell: single-quoted, with each `'` written as `'\''`.
pub(crate) fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_printed_without_secrets_and_words_are_quoted() {
        assert_eq!(
            display_url("https://user:pw@hooks.example/suki?token=abc#x"),
            "https://hooks.example/suki"
        );
        assert_eq!(display_url("not a url"), "<not a URL>");
        assert_eq!(shell_quote("a'b; rm -rf $HOME"), "'a'\\''b; rm -rf $HOME'");
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("printf %s {}", shell_quote("x'$(id)`y`;\"z")),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x'$(id)`y`;\"z");
    }
}
