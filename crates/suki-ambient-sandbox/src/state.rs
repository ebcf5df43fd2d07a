//! The sandbox's in-memory world: sessions, encounters, tokens, deliveries, faults.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use suki_ambient_core::WebhookSecret;
use suki_ambient_core::api::SessionStatus;

use crate::Fault;
use crate::synth::Generated;

/// Which product a sandbox session belongs to (core's, shared with the reconciler).
pub use suki_ambient_core::SessionKind;

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) encounter_id: String,
    pub(crate) kind: SessionKind,
    pub(crate) status: SessionStatus,
    pub(crate) generated: Option<Generated>,
    /// The webhook of its end, kept for a redelivery.
    pub(crate) event: Option<suki_ambient_core::WebhookEvent>,
    /// The partner's `additional_info`, when it gave one (`None`: the sandbox's own).
    pub(crate) additional_info: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug)]
pub(crate) struct TokenInfo {
    pub(crate) expires: SystemTime,
    pub(crate) provider_id: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct World {
    pub(crate) sessions: HashMap<String, Session>,
    /// Encounter id → its session ids in creation order.
    pub(crate) encounters: HashMap<String, Vec<String>>,
    pub(crate) tokens: HashMap<String, TokenInfo>,
    pub(crate) completed: u64,
    pub(crate) token_serial: u64,
    pub(crate) faults: Vec<Fault>,
    pub(crate) webhook_faults: Vec<crate::WebhookFault>,
    pub(crate) requests: RequestCounts,
}

/// Request counts per path, bounded: at most [`MAX_COUNTED_PATHS`] distinct paths are counted
/// one by one; requests to further paths are counted together, so that a scan of random paths
/// cannot grow the sandbox's memory.
#[derive(Debug, Default)]
pub(crate) struct RequestCounts {
    by_path: HashMap<String, u64>,
    others: u64,
}

/// How many distinct paths [`RequestCounts`] keeps.
pub(crate) const MAX_COUNTED_PATHS: usize = 10_000;

impl RequestCounts {
    pub(crate) fn count(&mut self, path: &str) {
        if let Some(n) = self.by_path.get_mut(path) {
            *n += 1;
        } else if self.by_path.len() < MAX_COUNTED_PATHS {
            self.by_path.insert(path.to_owned(), 1);
        } else {
            self.others += 1;
        }
    }

    /// Requests to paths starting with `prefix`; those past the bound count for the prefix `/`
    /// (and the empty one) only.
    pub(crate) fn under(&self, prefix: &str) -> u64 {
        let counted: u64 = self
            .by_path
            .iter()
            .filter(|(path, _)| path.starts_with(prefix))
            .map(|(_, n)| n)
            .sum();
        if "/".starts_with(prefix) {
            counted + self.others
        } else {
            counted
        }
    }
}

pub(crate) struct Shared {
    pub(crate) world: Mutex<World>,
    pub(crate) secret: WebhookSecret,
    pub(crate) partners: Vec<(String, String)>,
    pub(crate) token_ttl: Duration,
    pub(crate) require_provider_id: bool,
    pub(crate) admin_token: String,
    pub(crate) loopback_hosts_only: bool,
    pub(crate) base_url: String,
    pub(crate) webhook_url: Mutex<Option<String>>,
    pub(crate) http: reqwest::Client,
    /// The FHIR server's resources (apart from the world: a transaction holds it while it runs).
    pub(crate) fhir: Mutex<crate::fhir_store::FhirStore>,
    /// The bearer token the FHIR server asks for.
    pub(crate) fhir_token: String,
}

impl Shared {
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        // The world stays consistent between statements; a panic elsewhere does not corrupt it.
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn fhir(&self) -> MutexGuard<'_, crate::fhir_store::FhirStore> {
        // A transaction is planned before anything is stored: a panic cannot leave half of one.
        self.fhir.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counts_stay_bounded() {
        let mut counts = RequestCounts::default();
        for i in 0..MAX_COUNTED_PATHS + 5_000 {
            counts.count(&format!("/scan/{i}"));
        }
        counts.count("/scan/0");
        assert_eq!(counts.by_path.len(), MAX_COUNTED_PATHS);
        assert_eq!(counts.under("/scan/0"), 2);
        assert_eq!(counts.under("/"), (MAX_COUNTED_PATHS + 5_001) as u64);
    }
}
