//! Nameserver discovery through an HTTP address server (RocketMQ's
//! `fetchNamesrvAddrByAddressServer`): `GET <url>` answers `host:port;host:port`.
//! Fetched once at start, before anything registers; a failure keeps the configured
//! addresses.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest answer read.
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0} is not an http:// URL")]
    Url(String),
    #[error("cannot reach {url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url} answered: {status}")]
    Status { url: String, status: String },
    #[error("{url} answered no host:port addresses")]
    Empty { url: String },
}

/// Fetches the nameserver list from `url` (plain HTTP/1.0, no redirects).
pub fn fetch(url: &str, timeout: Duration) -> Result<Vec<String>, FetchError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| FetchError::Url(url.to_owned()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let io = |source: std::io::Error| FetchError::Io {
        url: url.to_owned(),
        source,
    };
    let addr = host_port
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| io(std::io::Error::other("no address")))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    // One write: a server that answers after the first bytes and closes would reset a
    // connection that still has unread request bytes.
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER as u64)
        .read_to_end(&mut answer)
        .map_err(io)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status: status.to_owned(),
        });
    }
    let addrs: Vec<String> = body
        .split(';')
        .map(str::trim)
        .filter(|a| {
            a.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        })
        .map(str::to_owned)
        .collect();
    if addrs.is_empty() {
        return Err(FetchError::Empty {
            url: url.to_owned(),
        });
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_once(answer: &'static str) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // Read the whole request head before answering and closing.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            s.write_all(answer.as_bytes()).unwrap();
        });
        format!("http://127.0.0.1:{port}/rocketmq/nsaddr")
    }

    #[test]
    fn parses_the_address_list() {
        let url = serve_once(
            "HTTP/1.1 200 OK\r\nContent-Length: 33\r\n\r\n10.0.0.1:9876; 10.0.0.2:9876\n",
        );
        assert_eq!(
            fetch(&url, Duration::from_secs(5)).unwrap(),
            vec!["10.0.0.1:9876", "10.0.0.2:9876"]
        );
    }

    #[test]
    fn errors_are_reported() {
        let url = serve_once("HTTP/1.1 404 Not Found\r\n\r\n");
        assert!(matches!(
            fetch(&url, Duration::from_secs(5)),
            Err(FetchError::Status { .. })
        ));
        let url = serve_once("HTTP/1.1 200 OK\r\n\r\nnothing useful");
        assert!(matches!(
            fetch(&url, Duration::from_secs(5)),
            Err(FetchError::Empty { .. })
        ));
        assert!(matches!(
            fetch("https://x/y", Duration::from_secs(1)),
            Err(FetchError::Url(_))
        ));
    }
}
