//! Fetching image files into the host cache: absolute paths, `file://` and plain `http://`
//! (HTTP/1.0, no redirects, no TLS: `https://` is refused), hashed while copied and moved into
//! place only once the SHA-256 matches.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::hypervisor::{HvError, HvResult};

const IO_TIMEOUT: Duration = Duration::from_secs(60);

fn fetch_err(location: &str, reason: impl std::fmt::Display) -> HvError {
    HvError::Fetch {
        location: location.to_string(),
        reason: reason.to_string(),
    }
}

/// Where a source points, once parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Location {
    Path(String),
    Http {
        host: String,
        port: u16,
        path: String,
    },
}

pub fn parse_location(source: &str) -> HvResult<Location> {
    if let Some(path) = source.strip_prefix("file://") {
        // Only the empty authority (`file:///abs/path`) is meaningful on one host.
        if !path.starts_with('/') {
            return Err(fetch_err(source, "file:// URLs must name an absolute path"));
        }
        return Ok(Location::Path(path.to_string()));
    }
    if source.starts_with('/') {
        return Ok(Location::Path(source.to_string()));
    }
    if let Some(rest) = source.strip_prefix("http://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() => (
                h,
                p.parse::<u16>()
                    .map_err(|_| fetch_err(source, "bad port in URL"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(fetch_err(source, "no host in URL"));
        }
        return Ok(Location::Http {
            host: host.to_string(),
            port,
            path: path.to_string(),
        });
    }
    Err(fetch_err(
        source,
        "unsupported source: use an absolute path, file:// or http:// (https:// is not supported)",
    ))
}

fn open_http(source: &str, host: &str, port: u16, path: &str) -> HvResult<Box<dyn Read>> {
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| fetch_err(source, e))?
        .next()
        .ok_or_else(|| fetch_err(source, "host has no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| fetch_err(source, e))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| fetch_err(source, e))?;
    // HTTP/1.0 so the server never answers chunked and closes after the body.
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: andromede-agent\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| fetch_err(source, e))?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .map_err(|e| fetch_err(source, e))?;
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        return Err(fetch_err(
            source,
            format!("HTTP status line {:?}", status.trim_end()),
        ));
    }
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| fetch_err(source, e))?;
        if n == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    Ok(Box::new(reader))
}

fn open(source: &str) -> HvResult<Box<dyn Read>> {
    match parse_location(source)? {
        Location::Path(path) => Ok(Box::new(
            File::open(&path).map_err(|e| fetch_err(source, e))?,
        )),
        Location::Http { host, port, path } => open_http(source, &host, port, &path),
    }
}

/// Copies `source` into `tmp` while hashing it and returns the lowercase hex SHA-256.
pub fn fetch_to(source: &str, tmp: &Path) -> HvResult<String> {
    let mut input = open(source)?;
    let mut out = File::create(tmp).map_err(|e| fetch_err(source, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = fs::remove_file(tmp);
                return Err(fetch_err(source, e));
            }
        };
        hasher.update(&buf[..n]);
        if let Err(e) = out.write_all(&buf[..n]) {
            let _ = fs::remove_file(tmp);
            return Err(fetch_err(source, e));
        }
    }
    out.sync_all().map_err(|e| fetch_err(source, e))?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_locations() {
        assert_eq!(
            parse_location("/a/b").unwrap(),
            Location::Path("/a/b".into())
        );
        assert_eq!(
            parse_location("file:///a/b").unwrap(),
            Location::Path("/a/b".into())
        );
        assert_eq!(
            parse_location("http://h:8080/x/y.img").unwrap(),
            Location::Http {
                host: "h".into(),
                port: 8080,
                path: "/x/y.img".into()
            }
        );
        assert_eq!(
            parse_location("http://h").unwrap(),
            Location::Http {
                host: "h".into(),
                port: 80,
                path: "/".into()
            }
        );
    }

    #[test]
    fn refuses_https_and_relative_paths() {
        assert!(matches!(
            parse_location("https://h/x"),
            Err(HvError::Fetch { .. })
        ));
        assert!(matches!(
            parse_location("rel/x"),
            Err(HvError::Fetch { .. })
        ));
        assert!(matches!(
            parse_location("file://host/x"),
            Err(HvError::Fetch { .. })
        ));
    }

    #[test]
    fn fetches_over_plain_http() {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for status in ["404 Not Found", "200 OK"] {
                let (mut conn, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                assert!(line.starts_with("GET /img HTTP/1.0"), "{line}");
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" {
                        break;
                    }
                }
                write!(conn, "HTTP/1.0 {status}\r\nContent-Length: 3\r\n\r\nabc").unwrap();
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let url = format!("http://127.0.0.1:{port}/img");
        assert!(matches!(fetch_to(&url, &tmp), Err(HvError::Fetch { .. })));
        let sum = fetch_to(&url, &tmp).unwrap();
        assert_eq!(
            sum,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        server.join().unwrap();
    }

    #[test]
    fn fetch_hashes_what_it_copies() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, b"abc").unwrap();
        let tmp = dir.path().join("tmp");
        let sum = fetch_to(src.to_str().unwrap(), &tmp).unwrap();
        assert_eq!(
            sum,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(fs::read(&tmp).unwrap(), b"abc");
    }
}
