//! A minimal client of Caddy's admin API: one HTTP/1.0 request per connection, over the unix
//! socket or the loopback address. HTTP/1.0 makes Caddy close the connection after a plain
//! (never chunked) answer, and lets a unix-socket request go without a `Host` header, which
//! is what Caddy accepts there.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::super::ProxyError;
use super::super::settings::AdminEndpoint;

/// Longest wait for Caddy to accept, read or answer a request (a load provisions every app).
const TIMEOUT: Duration = Duration::from_secs(30);

/// What Caddy answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// Caddy's `{"error": "..."}`, or the body as text.
    pub fn message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|value| value.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_string())
    }
}

#[derive(Debug, Clone)]
pub struct Admin {
    endpoint: AdminEndpoint,
}

impl Admin {
    pub fn new(endpoint: AdminEndpoint) -> Admin {
        Admin { endpoint }
    }

    pub fn endpoint(&self) -> &AdminEndpoint {
        &self.endpoint
    }

    /// `GET <path>`, which must answer 200 with JSON of the expected shape.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ProxyError> {
        let request = format!("GET {path}");
        let answer = self.request("GET", path, None)?;
        if answer.status != 200 {
            return Err(self.unexpected(&request, &answer));
        }
        serde_json::from_slice(&answer.body).map_err(|e| ProxyError::Answer {
            endpoint: self.endpoint.to_string(),
            request,
            status: answer.status,
            message: format!("not the JSON berth expects: {e}"),
        })
    }

    /// An error for an answer the caller did not expect.
    pub fn unexpected(&self, request: &str, answer: &Answer) -> ProxyError {
        ProxyError::Answer {
            endpoint: self.endpoint.to_string(),
            request: request.to_string(),
            status: answer.status,
            message: answer.message(),
        }
    }

    /// One request; a JSON body when given. Any failure to exchange it means Caddy is not there.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer, ProxyError> {
        let unreachable = |source| ProxyError::Unreachable { endpoint: self.endpoint.to_string(), source };
        let mut head = format!("{method} {path} HTTP/1.0\r\n");
        let raw = match &self.endpoint {
            AdminEndpoint::Unix(path) => {
                let stream = UnixStream::connect(path).map_err(unreachable)?;
                stream.set_read_timeout(Some(TIMEOUT)).map_err(unreachable)?;
                stream.set_write_timeout(Some(TIMEOUT)).map_err(unreachable)?;
                exchange(stream, head, body)
            }
            AdminEndpoint::Loopback(address) => {
                // Caddy refuses a loopback request whose Host is not its listen address.
                head.push_str(&format!("Host: {address}\r\n"));
                let stream = TcpStream::connect_timeout(address, TIMEOUT).map_err(unreachable)?;
                stream.set_read_timeout(Some(TIMEOUT)).map_err(unreachable)?;
                stream.set_write_timeout(Some(TIMEOUT)).map_err(unreachable)?;
                exchange(stream, head, body)
            }
        }
        .map_err(unreachable)?;
        parse(&raw).ok_or_else(|| {
            unreachable(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an HTTP answer: {:?}", String::from_utf8_lossy(&raw[..raw.len().min(200)])),
            ))
        })
    }
}

fn exchange(
    mut stream: impl Read + Write,
    mut head: String,
    body: Option<&[u8]>,
) -> std::io::Result<Vec<u8>> {
    if let Some(body) = body {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.unwrap_or_default())?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    Ok(raw)
}

/// Status and body of an HTTP/1.0 answer.
fn parse(raw: &[u8]) -> Option<Answer> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status_line = std::str::from_utf8(&raw[..split]).ok()?.lines().next()?;
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    Some(Answer { status, body: raw[split + 4..].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_caddy_errors_are_read() {
        let answer =
            parse(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 20\r\n\r\n{\"error\":\"no good\"}\n")
                .unwrap();
        assert_eq!(answer.status, 400);
        assert_eq!(answer.message(), "no good");
        assert_eq!(parse(b"HTTP/1.0 200 OK\r\n\r\nplain").unwrap().message(), "plain");
        assert!(parse(b"garbage").is_none());
    }

    #[test]
    fn a_missing_socket_is_unreachable() {
        let admin = Admin::new(AdminEndpoint::Unix("/nonexistent/berth/admin.sock".into()));
        let error = admin.get_json::<serde_json::Value>("/config/").unwrap_err();
        assert!(matches!(error, ProxyError::Unreachable { .. }), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("the proxy does not answer at unix:/nonexistent/berth/admin.sock ("),
            "{error}"
        );
    }
}
