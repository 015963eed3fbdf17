//! Plain HTTP for tests of the services' `http` listeners: the address a process printed, and
//! a GET over one HTTP/1.0 connection (the body ends when the server closes it).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one GET may take.
const GET_DEADLINE: Duration = Duration::from_secs(30);

/// An HTTP response: status code, header lines, body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The header lines, as sent.
    pub headers: String,
    /// The body.
    pub body: String,
}

/// `GET path` from `address`; panics naming the URL when the server cannot be reached in time.
pub async fn http_get(address: SocketAddr, path: &str) -> HttpResponse {
    let url = format!("http://{address}{path}");
    let exchange = async {
        let mut stream = TcpStream::connect(address).await?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = match tokio::time::timeout(GET_DEADLINE, exchange).await {
        Ok(Ok(raw)) => String::from_utf8_lossy(&raw).into_owned(),
        Ok(Err(e)) => panic!("GET {url}: {e}"),
        Err(_) => panic!("GET {url} took more than {GET_DEADLINE:?}"),
    };
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("GET {url}: no header end in {raw:?}"));
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("GET {url}: bad status line {status_line:?}"));
    HttpResponse { status, headers: headers.to_owned(), body: body.to_owned() }
}

/// The address after `marker` in a process's stderr (`... on http://127.0.0.1:PORT/`).
pub fn printed_http_address(stderr: &str, marker: &str) -> Option<SocketAddr> {
    stderr.lines().find_map(|line| {
        let rest = line.split_once(marker)?.1.trim().strip_prefix("http://")?;
        rest.trim_end_matches('/').parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_address_is_read_from_the_printed_line() {
        let stderr = "x\nswitchyard coordinator dashboard on http://127.0.0.1:4321/\n";
        let marker = "dashboard on ";
        assert_eq!(printed_http_address(stderr, marker), Some("127.0.0.1:4321".parse().expect("address")));
        assert_eq!(printed_http_address("dashboard on http://127.0.", marker), None);
    }
}
