//! The address-server convention: `GET /rocketmq/nsaddr` (any path under `/rocketmq/`)
//! answers `host:port;host:port` as plain text, so clients configured with an HTTP
//! address endpoint find this nameserver.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

/// Request heads larger than this are refused.
const MAX_HEAD_BYTES: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve(mut stream: TcpStream, advertised: Rc<String>) {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() > MAX_HEAD_BYTES {
            break false;
        }
        let read = futures_lite::future::or(async { Some(stream.read(&mut chunk).await) }, async {
            glommio::timer::sleep(READ_TIMEOUT).await;
            None
        })
        .await;
        match read {
            Some(Ok(n)) if n > 0 => head.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    let response = if complete {
        respond(&head, &advertised)
    } else {
        status(431, "Request Header Fields Too Large", "")
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.close().await;
}

fn respond(head: &[u8], advertised: &str) -> String {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(path)) if path.starts_with("/rocketmq/") => {
            status(200, "OK", advertised)
        }
        (Some("GET"), Some(_)) => status(404, "Not Found", ""),
        _ => status(400, "Bad Request", ""),
    }
}

fn status(code: u16, reason: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_address_list() {
        let ok = respond(
            b"GET /rocketmq/nsaddr HTTP/1.1\r\nHost: x\r\n\r\n",
            "127.0.0.1:9876",
        );
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(ok.ends_with("\r\n\r\n127.0.0.1:9876"));
        assert!(respond(b"GET /other HTTP/1.1\r\n\r\n", "x").starts_with("HTTP/1.1 404"));
        assert!(respond(b"\r\n\r\n", "x").starts_with("HTTP/1.1 400"));
    }
}
