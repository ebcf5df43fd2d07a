//! The sandbox's in-memory world: sessions, encounters, tokens, deliveries, faults.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use suki_ambient_core::WebhookSecret;
use suki_ambient_core::api::SessionStatus;

use crate::Fault;
use crate::synth::Generated;

/// Which product a sandbox session belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// An Ambient session (note, structured data, transcript).
    Ambient,
    /// A form-filling session (status and structured data only).
    FormFilling,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) encounter_id: String,
    pub(crate) kind: SessionKind,
    pub(crate) status: SessionStatus,
    pub(crate) generated: Option<Generated>,
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
    pub(crate) requests: HashMap<String, u64>,
}

pub(crate) struct Shared {
    pub(crate) world: Mutex<World>,
    pub(crate) secret: WebhookSecret,
    pub(crate) partners: Vec<(String, String)>,
    pub(crate) token_ttl: Duration,
    pub(crate) require_provider_id: bool,
    pub(crate) base_url: String,
    pub(crate) webhook_url: Mutex<Option<String>>,
    pub(crate) http: reqwest::Client,
}

impl Shared {
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        // The world stays consistent between statements; a panic elsewhere does not corrupt it.
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fresh random id shaped like a UUID v4.
pub(crate) fn new_id() -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        fastrand::u16(0x8000..0xc000),
        fastrand::u64(..1 << 48)
    )
}
