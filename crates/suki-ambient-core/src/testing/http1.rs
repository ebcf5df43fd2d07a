//! A keep-alive HTTP/1.1 client for tests and load generators: one connection, one request at
//! a time, reconnecting (and resending) when the server closed the connection before answering.
//! It reads answers with the same parser as [`send_raw`](super::send_raw).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::raw_http::{RawResponse, parse_response, response_complete};

/// One keep-alive connection.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// A POST request's bytes (`Content-Length`, keep-alive).
pub fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

impl Conn {
    /// A connection to `addr` (opened on first use).
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            buf: vec![0; 64 * 1024],
        }
    }

    /// Sends `request`; returns the status and body of the answer.
    ///
    /// # Errors
    /// When the server cannot be reached or answers garbage, after one reconnect.
    pub async fn send(&mut self, request: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        for attempt in 0..2 {
            match self.try_send(request).await {
                Ok(Some(answer)) => return Ok(answer),
                // Closed before any answer: the request was not handled; resend once.
                Ok(None) if attempt == 0 => self.stream = None,
                Ok(None) => break,
                Err(e) if attempt == 0 && self.stream.is_some() => {
                    let _ = e;
                    self.stream = None;
                }
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("connection closed without an answer"))
    }

    async fn try_send(&mut self, request: &[u8]) -> std::io::Result<Option<(u16, Vec<u8>)>> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("just connected");
        if stream.write_all(request).await.is_err() {
            return Ok(None);
        }
        let mut have = 0;
        loop {
            if have == self.buf.len() {
                self.buf.resize(have * 2, 0);
            }
            let n = match stream.read(&mut self.buf[have..]).await {
                Ok(n) => n,
                Err(_) if have == 0 => return Ok(None),
                Err(e) => return Err(e),
            };
            if n == 0 {
                if have == 0 {
                    return Ok(None);
                }
                return Err(std::io::Error::other("connection closed mid-answer"));
            }
            have += n;
            if !response_complete(&self.buf[..have]) {
                continue;
            }
            let RawResponse {
                status,
                body,
                headers,
            } = parse_response(&self.buf[..have]).map_err(std::io::Error::other)?;
            let close = headers
                .iter()
                .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"));
            if close {
                self.stream = None;
            }
            return Ok(Some((status, body)));
        }
    }
}
