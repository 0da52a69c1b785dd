//! Fetching image files into the host cache: absolute paths, `file://`, `http://` and
//! `https://` (reqwest with rustls: the system's CA store plus an optional CA file, bounded
//! redirects, timeouts, a size cap), hashed while copied. Errors name the source and what went
//! wrong, never what a remote server said about itself.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::hypervisor::{HvError, HvResult};

/// How images are downloaded.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// A PEM file of extra CA certificates trusted for `https://` sources (an image store with
    /// a private CA), on top of the system's.
    pub ca_file: Option<PathBuf>,
    /// Largest file accepted; a longer download is cut and refused.
    pub max_bytes: u64,
    /// Connect timeout, and the longest a read may stall.
    pub timeout: Duration,
    /// Redirects followed at most.
    pub max_redirects: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            max_bytes: 64 << 30,
            timeout: Duration::from_secs(60),
            max_redirects: 5,
        }
    }
}

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
    Url(String),
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
    if let Some(rest) = source
        .strip_prefix("http://")
        .or_else(|| source.strip_prefix("https://"))
    {
        // The URL parser would read `https:///x` as host `x`.
        if rest.is_empty() || rest.starts_with('/') {
            return Err(fetch_err(source, "no host in URL"));
        }
        let url = reqwest::Url::parse(source).map_err(|e| fetch_err(source, e))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(fetch_err(source, "no host in URL"));
        }
        return Ok(Location::Url(source.to_string()));
    }
    Err(fetch_err(
        source,
        "unsupported source: use an absolute path, file://, http:// or https://",
    ))
}

fn client(cfg: &FetchConfig, source: &str) -> HvResult<reqwest::blocking::Client> {
    let mut b = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .connect_timeout(cfg.timeout)
        .timeout(cfg.timeout)
        .user_agent(concat!("andromede-agent/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(cfg.max_redirects));
    if let Some(ca) = &cfg.ca_file {
        let pem = fs::read(ca)
            .map_err(|e| fetch_err(source, format!("CA file {}: {e}", ca.display())))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| fetch_err(source, format!("CA file {}: {e}", ca.display())))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| fetch_err(source, e))
}

fn open_url(cfg: &FetchConfig, source: &str) -> HvResult<Box<dyn Read>> {
    let resp = client(cfg, source)?
        .get(source)
        .send()
        .map_err(|e| fetch_err(source, describe(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        // The status code only: bodies and reason phrases are the remote server's words.
        return Err(fetch_err(
            source,
            format!("HTTP status {}", status.as_u16()),
        ));
    }
    if resp.content_length().is_some_and(|n| n > cfg.max_bytes) {
        return Err(fetch_err(source, too_big(cfg)));
    }
    Ok(Box::new(resp))
}

/// What went wrong with a request, in our words.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_redirect() {
        "too many redirects".into()
    } else if e.is_connect() {
        // TLS failures (an untrusted certificate) surface as connect errors; their chain names
        // the reason without anything the server sent.
        let mut why = String::from("cannot connect");
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            why = format!("{why}: {s}");
            src = s.source();
        }
        why
    } else {
        e.to_string()
    }
}

fn too_big(cfg: &FetchConfig) -> String {
    format!(
        "larger than the host's image size limit ({} bytes)",
        cfg.max_bytes
    )
}

fn open(cfg: &FetchConfig, source: &str) -> HvResult<Box<dyn Read>> {
    match parse_location(source)? {
        Location::Path(path) => Ok(Box::new(
            File::open(&path).map_err(|e| fetch_err(source, e))?,
        )),
        Location::Url(url) => open_url(cfg, &url),
    }
}

/// Copies `source` into `tmp` while hashing it and returns the lowercase hex SHA-256.
pub fn fetch_to(cfg: &FetchConfig, source: &str, tmp: &Path) -> HvResult<String> {
    let mut input = open(cfg, source)?;
    let mut out = File::create(tmp).map_err(|e| fetch_err(source, e))?;
    let fail = |e: HvError| {
        let _ = fs::remove_file(tmp);
        e
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total: u64 = 0;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(fetch_err(source, e))),
        };
        total += n as u64;
        if total > cfg.max_bytes {
            return Err(fail(fetch_err(source, too_big(cfg))));
        }
        hasher.update(&buf[..n]);
        if let Err(e) = out.write_all(&buf[..n]) {
            return Err(fail(fetch_err(source, e)));
        }
    }
    out.sync_all().map_err(|e| fail(fetch_err(source, e)))?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::Arc;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

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
            parse_location("https://h:8443/x.img").unwrap(),
            Location::Url("https://h:8443/x.img".into())
        );
        for bad in [
            "ftp://h/x",
            "rel/x",
            "file://host/x",
            "http://",
            "https:///x",
        ] {
            assert!(
                matches!(parse_location(bad), Err(HvError::Fetch { .. })),
                "{bad}"
            );
        }
    }

    /// Answers each connection on `l` with the next of `answers` (raw HTTP responses), through
    /// `tls` when given.
    fn serve(
        l: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        answers: Vec<String>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((tcp, _)) = l.accept() else { return };
                let mut stream: Box<dyn ReadWrite> = match &tls {
                    Some(cfg) => {
                        let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
                        Box::new(rustls::StreamOwned::new(conn, tcp))
                    }
                    None => Box::new(tcp),
                };
                let mut reader = BufReader::new(&mut stream);
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                drop(reader);
                let _ = stream.write_all(answer.as_bytes());
                let _ = stream.flush();
            }
        })
    }

    trait ReadWrite: Read + Write + Send {}
    impl<T: Read + Write + Send> ReadWrite for T {}

    fn ok(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn fetches_over_http_following_redirects_and_hides_the_remote_words() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = serve(
            l,
            None,
            vec![
                "HTTP/1.1 404 Secret-Server-Banner-7\r\nServer: banner/1.0\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope".into(),
                format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/real\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                ok("abc"),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let url = format!("http://127.0.0.1:{port}/img");
        let cfg = FetchConfig::default();
        let e = fetch_to(&cfg, &url, &tmp).unwrap_err().to_string();
        assert!(e.contains("HTTP status 404"), "{e}");
        assert!(!e.contains("Banner") && !e.contains("banner"), "{e}");
        assert_eq!(fetch_to(&cfg, &url, &tmp).unwrap(), ABC);
        server.join().unwrap();
    }

    #[test]
    fn downloads_past_the_size_cap_are_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // One answer declares its length, the other streams until the connection closes.
        let server = serve(
            l,
            None,
            vec![
                ok("0123456789"),
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789".into(),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let cfg = FetchConfig {
            max_bytes: 4,
            ..Default::default()
        };
        let url = format!("http://127.0.0.1:{port}/big");
        for _ in 0..2 {
            let e = fetch_to(&cfg, &url, &tmp).unwrap_err().to_string();
            assert!(e.contains("size limit"), "{e}");
            assert!(!tmp.exists());
        }
        server.join().unwrap();
    }

    #[test]
    fn fetches_over_https_with_a_configured_ca_only() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let server_cfg = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.der().clone()],
                    rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
                )
                .unwrap(),
        );
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = serve(l, Some(server_cfg), vec![ok("abc"), ok("abc")]);
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        fs::write(&ca, cert.pem()).unwrap();
        let tmp = dir.path().join("tmp");
        let url = format!("https://localhost:{port}/img");

        // Not trusted by the system: refused.
        let e = fetch_to(&FetchConfig::default(), &url, &tmp)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot connect"), "{e}");
        // Trusted through the configured CA, and from a blocking thread of a runtime, as the
        // agent calls it.
        let cfg = FetchConfig {
            ca_file: Some(ca),
            ..Default::default()
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sum = rt
            .block_on(async {
                tokio::task::spawn_blocking(move || fetch_to(&cfg, &url, &tmp)).await
            })
            .unwrap()
            .unwrap();
        assert_eq!(sum, ABC);
        server.join().unwrap();
    }

    #[test]
    fn fetch_hashes_what_it_copies() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, b"abc").unwrap();
        let tmp = dir.path().join("tmp");
        let sum = fetch_to(&FetchConfig::default(), src.to_str().unwrap(), &tmp).unwrap();
        assert_eq!(sum, ABC);
        assert_eq!(fs::read(&tmp).unwrap(), b"abc");
    }
}
