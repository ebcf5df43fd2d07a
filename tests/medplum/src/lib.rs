//! The EHR of the write-back tests: Medplum's FHIR router (in memory; every resource validated
//! against R4) behind `server.mjs`, started as a child process on a free loopback port, with
//! the knobs real EHRs differ in ([`Options`]) and the controls a test needs: faults
//! ([`Fault`]), token expiry, the resource types it creates, what it stores, what it was asked.
//!
//! Tests using it need Node.js and the server's packages (`npm ci --prefix tests/medplum`,
//! which `.ci/run` does); they are `#[ignore = NEEDS]` in a plain `cargo test`. Test
//! scaffolding: not part of the SDK.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// Why a test using [`Medplum`] is ignored in a plain `cargo test`.
pub const NEEDS: &str =
    "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)";

/// How the EHR behaves; the default takes transactions and honours `If-None-Exist`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    args: Vec<String>,
    /// Files written for the server, removed with it.
    files: Vec<std::path::PathBuf>,
}

impl Options {
    fn arg(mut self, name: &str, value: Option<&str>) -> Self {
        self.args.push(name.to_owned());
        self.args.extend(value.map(str::to_owned));
        self
    }

    /// Whether transaction Bundles are taken (default yes).
    #[must_use]
    pub fn transactions(self, taken: bool) -> Self {
        self.arg("--transactions", Some(if taken { "on" } else { "off" }))
    }

    /// Whether `If-None-Exist` is honoured (default yes); without it the CapabilityStatement
    /// says `conditionalCreate: false` and the condition is ignored.
    #[must_use]
    pub fn conditional_create(self, honoured: bool) -> Self {
        self.arg(
            "--conditional-create",
            Some(if honoured { "on" } else { "off" }),
        )
    }

    /// A SMART Backend Services client, `id`, with the public keys of `jwks` (a JWK Set).
    #[must_use]
    pub fn smart_client(mut self, id: &str, jwks: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "medplum-jwks-{}-{}.json",
            std::process::id(),
            FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&path, jwks).expect("a JWKS file");
        let text = path.to_str().expect("a UTF-8 path").to_owned();
        self.files.push(path);
        self.arg("--smart-client", Some(id))
            .arg("--smart-jwks", Some(&text))
    }

    /// The scopes its token endpoint grants at most (space-separated).
    #[must_use]
    pub fn smart_grants(self, scopes: &str) -> Self {
        self.arg("--smart-grants", Some(scopes))
    }

    /// The lifetime of the tokens it issues.
    #[must_use]
    pub fn token_ttl(self, ttl: Duration) -> Self {
        self.arg("--token-ttl", Some(&ttl.as_secs().to_string()))
    }

    /// The only resource types it creates (and its CapabilityStatement lists).
    #[must_use]
    pub fn writable(self, types: &[&str]) -> Self {
        self.arg("--writable", Some(&types.join(",")))
    }

    /// Searches (but of Provenance) must name the patient.
    #[must_use]
    pub fn patient_searches(self, required: bool) -> Self {
        if !required {
            return self;
        }
        self.arg("--patient-searches", None)
    }

    /// Created notes are kept in a `Binary` and read back as `attachment.url`.
    #[must_use]
    pub fn externalize_notes(self, externalize: bool) -> Self {
        if !externalize {
            return self;
        }
        self.arg("--externalize-notes", None)
    }
}

/// Numbers the JWKS files of one test process.
static FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A fault of the EHR: requests whose path starts with a prefix answered with a status, late,
/// or served and then cut off (the work done, the answer lost).
#[derive(Clone, Debug)]
pub struct Fault {
    spec: Value,
}

impl Fault {
    fn new(spec: Value) -> Self {
        let mut fault = Self { spec };
        fault.spec["prefix"] = json!("/fhir");
        fault
    }

    /// Answer with `status` (and an OperationOutcome).
    pub fn status(status: u16) -> Self {
        Self::new(json!({ "status": status }))
    }

    /// Serve a write, then cut the connection instead of answering.
    pub fn lose_answer() -> Self {
        Self::new(json!({ "loseAnswer": true }))
    }

    /// Serve the request `latency` late.
    pub fn latency(latency: Duration) -> Self {
        Self::new(json!({ "latencyMs": latency.as_millis() as u64 }))
    }

    /// With a `Retry-After` header.
    #[must_use]
    pub fn retry_after(mut self, value: &str) -> Self {
        self.spec["retryAfter"] = json!(value);
        self
    }

    /// Only paths starting with `prefix` (default `/fhir`: every FHIR request).
    #[must_use]
    pub fn on(mut self, prefix: &str) -> Self {
        self.spec["prefix"] = json!(prefix);
        self
    }

    /// Only requests of `method`.
    #[must_use]
    pub fn method(mut self, method: &str) -> Self {
        self.spec["method"] = json!(method);
        self
    }

    /// The next `n` matching requests (default 1).
    #[must_use]
    pub fn times(mut self, n: u64) -> Self {
        self.spec["times"] = json!(n);
        self
    }

    /// Each matching request with probability `share`, for good.
    #[must_use]
    pub fn share(mut self, share: f64) -> Self {
        self.spec["share"] = json!(share);
        self
    }
}

/// A running EHR; stopped when dropped.
pub struct Medplum {
    child: Child,
    files: Vec<std::path::PathBuf>,
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Drop for Medplum {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

impl Medplum {
    /// Starts an EHR with `options`; panics (with [`NEEDS`]) without Node.js or the packages.
    pub fn start(options: Options) -> Self {
        let dir = env!("CARGO_MANIFEST_DIR");
        assert!(
            std::path::Path::new(dir)
                .join("node_modules/@medplum/fhir-router")
                .exists(),
            "{NEEDS}"
        );
        let mut child = Command::new("node")
            .arg("server.mjs")
            .args(&options.args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{NEEDS}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut line = || lines.next().expect("a line").expect("utf-8");
        let base = line()
            .strip_prefix("listening on ")
            .expect("listening on URL")
            .to_owned();
        let token = line().strip_prefix("token ").expect("token").to_owned();
        Self {
            child,
            files: options.files,
            base,
            token,
            http: reqwest::Client::new(),
        }
    }

    /// The FHIR base URL, `http://127.0.0.1:PORT/fhir`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The fixed bearer token it takes.
    pub fn token(&self) -> &str {
        &self.token
    }

    fn control(&self, path: &str) -> String {
        format!("{}/admin/{path}", self.base.trim_end_matches("/fhir"))
    }

    async fn ask(&self, request: reqwest::RequestBuilder) -> Value {
        let response = request.send().await.expect("the EHR's control");
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.expect("json")
    }

    /// `GET [base]/<path>` with the fixed token, as JSON; panics unless it succeeds.
    pub async fn get(&self, path: &str) -> Value {
        self.ask(
            self.http
                .get(format!("{}/{path}", self.base))
                .bearer_auth(&self.token),
        )
        .await
    }

    /// Adds a fault.
    pub async fn inject(&self, fault: Fault) {
        self.ask(self.http.post(self.control("faults")).json(&fault.spec))
            .await;
    }

    /// Clears every fault.
    pub async fn clear_faults(&self) {
        self.ask(self.http.delete(self.control("faults"))).await;
    }

    /// Forgets every SMART token it issued.
    pub async fn expire_tokens(&self) {
        self.ask(self.http.post(self.control("expire-tokens")))
            .await;
    }

    /// The only resource types it creates from now on (`None`: all of a session's).
    pub async fn set_writable(&self, types: Option<&[&str]>) {
        self.ask(
            self.http
                .post(self.control("writable"))
                .json(&json!({ "types": types })),
        )
        .await;
    }

    /// How many SMART tokens it issued.
    pub async fn tokens_issued(&self) -> u64 {
        self.ask(self.http.get(self.control("state"))).await["tokensIssued"]
            .as_u64()
            .unwrap_or_default()
    }

    /// How many requests it was sent whose path starts with `prefix` (faulted ones too).
    pub async fn requests(&self, prefix: &str) -> u64 {
        let state = self.ask(self.http.get(self.control("state"))).await;
        state["requests"]
            .as_object()
            .map(|paths| {
                paths
                    .iter()
                    .filter(|(path, _)| path.starts_with(prefix))
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            })
            .unwrap_or_default()
    }

    /// Every resource it stores of `kind` (all kinds, Binary included, for `None`).
    pub async fn resources(&self, kind: Option<&str>) -> Vec<Value> {
        // A resource type is a plain name: nothing to escape.
        let url = match kind {
            Some(kind) => format!("{}?type={kind}", self.control("resources")),
            None => self.control("resources"),
        };
        match self.ask(self.http.get(url)).await {
            Value::Array(all) => all,
            other => panic!("not a list: {other}"),
        }
    }

    /// The resources of `kind` of session `session` (its tag).
    pub async fn of_session(&self, kind: &str, session: &str) -> Vec<Value> {
        self.resources(Some(kind))
            .await
            .into_iter()
            .filter(|r| {
                r["meta"]["tag"].as_array().is_some_and(|tags| {
                    tags.iter().any(|t| {
                        t["system"] == "urn:suki:session"
                            && t["code"].as_str().is_some_and(|c| c == session)
                    })
                })
            })
            .collect()
    }

    /// Every Provenance target of `session` names a resource it has.
    pub async fn provenance_resolves(&self, session: &str) {
        let found = self
            .get(&format!(
                "Provenance?_tag=urn:suki:session|{session}/provenance"
            ))
            .await;
        let entries = found["entry"].as_array().expect("a Provenance");
        assert_eq!(entries.len(), 1);
        for target in entries[0]["resource"]["target"]
            .as_array()
            .expect("targets")
        {
            let reference = target["reference"].as_str().expect("reference");
            assert!(!reference.starts_with("urn:"), "{reference}");
            let resource = self.get(reference).await;
            assert!(resource["id"].is_string(), "{reference} resolves");
        }
    }
}
