//! The sandbox holds under a web page's or a script's attack: its login takes JSON only, from no
//! foreign origin, with a bounded body and provider id, and keeps a bounded number of tokens
//! however many logins come; slow connections are closed.

use std::time::Duration;

use suki_ambient_sandbox::{DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN, MAX_TOKENS, Sandbox};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn login_body(provider: &str) -> String {
    serde_json::json!({
        "partner_id": DEFAULT_PARTNER_ID,
        "partner_token": DEFAULT_PARTNER_TOKEN,
        "provider_id": provider,
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refuses_cross_site_and_oversized_requests() {
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let url = format!("{}api/v1/auth/login", sandbox.base_url());
    let http = reqwest::Client::new();
    let post = |content_type: &'static str, origin: Option<&'static str>, body: String| {
        let mut request = http
            .post(&url)
            .header("content-type", content_type)
            .body(body);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    // What a web page can send without a preflight: a text/plain "simple" POST.
    let simple = post("text/plain", Some("https://evil.example"), login_body("p")).await;
    assert_eq!(status(simple.expect("send")), 415);
    let form = post("application/x-www-form-urlencoded", None, login_body("p")).await;
    assert_eq!(status(form.expect("send")), 415);
    let foreign = post(
        "application/json",
        Some("https://evil.example"),
        login_body("p"),
    )
    .await;
    assert_eq!(status(foreign.expect("send")), 403);
    let huge = post("application/json", None, login_body(&"x".repeat(1 << 20))).await;
    assert_eq!(status(huge.expect("send")), 413);
    let long_id = post("application/json", None, login_body(&"x".repeat(1_000))).await;
    assert_eq!(status(long_id.expect("send")), 400);
    let fine = post(
        "application/json; charset=utf-8",
        Some("http://127.0.0.1:3000"),
        login_body("p"),
    )
    .await;
    assert_eq!(status(fine.expect("send")), 200);
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_logins_keep_the_token_table_bounded() {
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let url = format!("{}api/v1/auth/login", sandbox.base_url());
    let http = reqwest::Client::new();
    let provider = "p".repeat(256);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8 {
        let (http, url, body) = (http.clone(), url.clone(), login_body(&provider));
        tasks.spawn(async move {
            for _ in (t..10_000).step_by(8) {
                let answer = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("send");
                assert_eq!(answer.status(), 200);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    assert!(
        sandbox.token_count() <= MAX_TOKENS,
        "{}",
        sandbox.token_count()
    );
    // The newest token works.
    let token = sandbox.issue_token(Some("p"));
    assert!(sandbox.token_count() <= MAX_TOKENS);
    let answer = http
        .get(format!(
            "{}api/v1/ambient/session/none/status",
            sandbox.base_url()
        ))
        .header("sdp_suki_token", token)
        .header("sdp_provider_id", "p")
        .send()
        .await
        .expect("send");
    assert_eq!(
        answer.status(),
        404,
        "authorized, and the session is unknown"
    );
    sandbox.shutdown().await;
}

/// An idle connection and one that never finishes its head are closed by the sandbox's server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_are_closed() {
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let addr = sandbox.addr();
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut half = tokio::net::TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET /api/v1/ambient/session/x/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");
    for stream in [&mut idle, &mut half] {
        let mut buf = [0u8; 1024];
        let closed = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the connection stayed open");
    }
    sandbox.shutdown().await;
}
