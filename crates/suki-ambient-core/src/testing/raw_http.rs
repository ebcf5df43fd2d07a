//! A minimal HTTP/1.1 client over a TCP socket, for the conformance suite: it controls the exact
//! bytes on the wire (header case, duplicate headers, a Content-Length sent without its body,
//! chunked bodies), which general-purpose clients normalise away.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How the request body is framed.
#[derive(Clone, Debug)]
pub enum RawBody {
    /// `Content-Length: len` and the bytes.
    Sized(Vec<u8>),
    /// `Content-Length: declared` but no body bytes are sent: the server must answer without
    /// waiting for them.
    DeclaredOnly(u64),
    /// `Transfer-Encoding: chunked`, no Content-Length, in chunks of the given size.
    Chunked(Vec<u8>, usize),
    /// `Content-Length: declared`, then only these bytes, then nothing more (the connection stays
    /// open): a body withheld.
    Withheld(u64, Vec<u8>),
    /// `Content-Length` and the bytes, one byte per interval: a body trickled.
    Trickled(Vec<u8>, Duration),
    /// `Content-Length` and the bytes: the first `split` of them, then a pause, then the rest.
    Paused(Vec<u8>, usize, Duration),
}

/// A response: status and body (de-chunked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Header lines, lowercase names.
    pub headers: Vec<(String, String)>,
}

impl RawResponse {
    /// The body as JSON, `Value::Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `http://host:port/path` into (`host:port`, `/path`).
fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url}"))?;
    Ok(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

/// Sends one POST with `headers` (name, value as given, in order) and `body` on a fresh
/// connection (`Connection: close`), and reads the whole response. Write errors after the server
/// answered early are expected (it may close while a large body is still being sent) and ignored.
///
/// # Errors
/// Connection failures, a timeout (10 s), or a response that is not HTTP/1.x.
pub async fn send_raw(
    url: &str,
    headers: &[(&str, &str)],
    body: RawBody,
) -> Result<RawResponse, String> {
    let (authority, path) = split_url(url)?;
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connect {authority}: {e}"))?;
        let mut head = format!("POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        match &body {
            RawBody::Sized(bytes) | RawBody::Trickled(bytes, _) | RawBody::Paused(bytes, ..) => {
                head.push_str(&format!("Content-Length: {}\r\n", bytes.len()));
            }
            RawBody::DeclaredOnly(len) | RawBody::Withheld(len, _) => {
                head.push_str(&format!("Content-Length: {len}\r\n"));
            }
            RawBody::Chunked(..) => head.push_str("Transfer-Encoding: chunked\r\n"),
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        let (mut reader, mut writer) = stream.into_split();
        // Send the body concurrently with reading, so an early answer is seen; the reading side
        // decides when the exchange is over.
        let send = async move {
            let _ignored: std::io::Result<()> = async {
                match body {
                    RawBody::Sized(bytes) | RawBody::Withheld(_, bytes) => {
                        writer.write_all(&bytes).await?;
                    }
                    RawBody::DeclaredOnly(_) => {}
                    RawBody::Trickled(bytes, interval) => {
                        for byte in bytes.chunks(1) {
                            writer.write_all(byte).await?;
                            writer.flush().await?;
                            tokio::time::sleep(interval).await;
                        }
                    }
                    RawBody::Paused(bytes, split, pause) => {
                        let (first, rest) = bytes.split_at(split.min(bytes.len()));
                        writer.write_all(first).await?;
                        writer.flush().await?;
                        tokio::time::sleep(pause).await;
                        writer.write_all(rest).await?;
                    }
                    RawBody::Chunked(bytes, size) => {
                        for chunk in bytes.chunks(size.max(1)) {
                            writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                            writer.write_all(chunk).await?;
                            writer.write_all(b"\r\n").await?;
                        }
                        writer.write_all(b"0\r\n\r\n").await?;
                    }
                }
                writer.flush().await
            }
            .await;
            // Keep the write half open until the read side is done (dropping it would send FIN
            // before a DeclaredOnly answer); write errors after an early answer are expected.
            std::future::pending::<()>().await;
            drop(writer);
        };
        let read = async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match reader.read(&mut chunk).await {
                    Ok(0) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    // A reset after a complete response is fine.
                    Err(e) if response_complete(&buf) => {
                        let _ = e;
                        break;
                    }
                    Err(e) => return Err(format!("read: {e}")),
                }
                if response_complete(&buf) {
                    break;
                }
            }
            Ok(buf)
        };
        let raw = tokio::select! {
            raw = read => raw,
            () = send => unreachable!("the sending side never finishes"),
        };
        parse_response(&raw?)
    })
    .await
    .map_err(|_| format!("no complete response from {url} within 10 s"))?
}

fn split_head(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&raw[..end], &raw[end + 4..]))
}

fn header_lines(head: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(head)
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect()
}

pub(super) fn response_complete(raw: &[u8]) -> bool {
    let Some((head, rest)) = split_head(raw) else {
        return false;
    };
    let headers = header_lines(head);
    if let Some((_, len)) = headers.iter().find(|(n, _)| n == "content-length") {
        return len.parse::<usize>().is_ok_and(|len| rest.len() >= len);
    }
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        return rest.ends_with(b"0\r\n\r\n");
    }
    false
}

pub(super) fn parse_response(raw: &[u8]) -> Result<RawResponse, String> {
    let (head, rest) = split_head(raw).ok_or("incomplete response head")?;
    let status_line =
        String::from_utf8_lossy(head.split(|&b| b == b'\r').next().unwrap_or_default())
            .into_owned();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 response: {status_line}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {status_line}"))?;
    let headers = header_lines(head);
    let body = if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        dechunk(rest)?
    } else if let Some((_, len)) = headers.iter().find(|(n, _)| n == "content-length") {
        let len: usize = len.parse().map_err(|_| "bad content-length")?;
        rest.get(..len).ok_or("short body")?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(RawResponse {
        status,
        body,
        headers,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(rest.get(..size).ok_or("short chunk")?);
        rest = rest.get(size + 2..).ok_or("short chunk")?;
    }
}
