//! Reading the secret and the body.

use std::io::Read;
use std::path::Path;

use suki_ambient_core::WebhookSecret;

use crate::Failure;

/// The secret's text: from `--secret-file` (one trailing newline dropped) or
/// `SUKI_WEBHOOK_SECRET`.
pub(crate) fn secret_text(file: Option<&Path>) -> Result<String, Failure> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure(format!(
                "cannot read the secret file {}: {e}",
                path.display()
            ))
        })?;
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        if text.is_empty() {
            return Err(Failure(format!(
                "the secret file {} is empty",
                path.display()
            )));
        }
        return Ok(text.to_owned());
    }
    match std::env::var("SUKI_WEBHOOK_SECRET") {
        Ok(text) if !text.is_empty() => Ok(text),
        Ok(_) => Err(Failure("SUKI_WEBHOOK_SECRET is empty".into())),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(Failure("SUKI_WEBHOOK_SECRET is not valid UTF-8".into()))
        }
        Err(std::env::VarError::NotPresent) => Err(Failure(
            "no webhook secret: set SUKI_WEBHOOK_SECRET or pass --secret-file".into(),
        )),
    }
}

/// The secret, as [`secret_text`].
pub(crate) fn secret(file: Option<&Path>) -> Result<WebhookSecret, Failure> {
    secret_text(file).map(WebhookSecret::from)
}

/// The body: a file, or standard input for `-` or no file.
pub(crate) fn read_body(file: Option<&Path>) -> Result<Vec<u8>, Failure> {
    match file {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::read(path).map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))
        }
        _ => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .map_err(|e| Failure(format!("cannot read standard input: {e}")))?;
            Ok(body)
        }
    }
}
