//! One probe of one node: connect, speak the check's protocol, judge the answer.
//!
//! Every probe is bounded by its timeout as a whole (connect, TLS, request, response), reads at
//! most `MAX_RESPONSE` bytes, and reports what it saw in words an operator can act on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::policy::{CheckKind, HealthCheck};

/// Largest HTTP response read (headers and body).
const MAX_RESPONSE: usize = 64 * 1024;
/// RTMP handshake: C1 and S1 are 1536 bytes.
const RTMP_HANDSHAKE_SIZE: usize = 1536;
/// RTMP protocol version in C0/S0.
const RTMP_VERSION: u8 = 3;

/// What one probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// Whether the check passed.
    pub ok: bool,
    /// Time from start to verdict.
    pub latency: Duration,
    /// What was seen: "HTTP 200", "connection refused", "timed out after 200ms".
    pub detail: String,
    /// Load the node reported in an HTTP check's body (`"load": 0.73` or `load=73%`).
    pub load: Option<f64>,
}

/// TLS configurations shared by all HTTPS probes, built once.
#[derive(Clone)]
pub struct TlsConfigs {
    verifying: Arc<rustls::ClientConfig>,
    insecure: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfigs")
    }
}

impl TlsConfigs {
    /// Mozilla's root store for verification; a verifier that accepts anything for checks
    /// that opt out (`verify: false`).
    pub fn new() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let verifying = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|_| unreachable_config());
        let insecure = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                    .with_no_client_auth()
            })
            .unwrap_or_else(|_| unreachable_config());
        TlsConfigs {
            verifying: Arc::new(verifying),
            insecure: Arc::new(insecure),
        }
    }
}

impl Default for TlsConfigs {
    fn default() -> Self {
        Self::new()
    }
}

/// ring's provider always supports the default protocol versions; this only satisfies the
/// type of a builder that cannot fail with it.
fn unreachable_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// Runs one probe, bounded by `timeout`.
// A probe times itself: its latency is what it measures.
#[allow(clippy::disallowed_methods)]
pub async fn probe(check: &HealthCheck, timeout: Duration, tls: &TlsConfigs) -> ProbeResult {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, run(check, tls)).await;
    let latency = started.elapsed();
    match outcome {
        Ok(Ok((detail, load))) => ProbeResult {
            ok: true,
            latency,
            detail,
            load,
        },
        Ok(Err(detail)) => ProbeResult {
            ok: false,
            latency,
            detail,
            load: None,
        },
        Err(_) => ProbeResult {
            ok: false,
            latency,
            detail: format!("timed out after {}ms", timeout.as_millis()),
            load: None,
        },
    }
}

/// What a passing probe saw, and the load it reported (HTTP only).
type Passed = (String, Option<f64>);

async fn run(check: &HealthCheck, tls: &TlsConfigs) -> Result<Passed, String> {
    let stream = TcpStream::connect(check.target)
        .await
        .map_err(|e| format!("connect {}: {}", check.target, describe(&e)))?;
    match check.kind {
        CheckKind::Tcp | CheckKind::None => Ok((format!("connected to {}", check.target), None)),
        CheckKind::Http => http(stream, check).await,
        CheckKind::Https => {
            let name = check
                .sni
                .as_deref()
                .or(check.host.as_deref())
                .map(|n| ServerName::try_from(n.to_string()))
                .unwrap_or_else(|| Ok(ServerName::IpAddress(check.target.ip().into())))
                .map_err(|e| format!("bad TLS server name: {e}"))?;
            let config = if check.verify_tls {
                &tls.verifying
            } else {
                &tls.insecure
            };
            let stream = TlsConnector::from(Arc::clone(config))
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            http(stream, check).await
        }
        CheckKind::Rtmp => rtmp(stream).await.map(|detail| (detail, None)),
    }
}

fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

/// GET the path, read until the server closes (or the cap), judge status and body.
async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    check: &HealthCheck,
) -> Result<Passed, String> {
    let host = check.host.clone().unwrap_or_else(|| match check.target {
        std::net::SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        v4 => v4.to_string(),
    });
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: geosteer-health/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        check.path,
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send request: {}", describe(&e)))?;
    let mut response = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify still sent a complete response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => 0,
            Err(e) => return Err(format!("read response: {}", describe(&e))),
        };
        if n == 0 {
            break;
        }
        let room = MAX_RESPONSE - response.len();
        response.extend_from_slice(&chunk[..n.min(room)]);
        if response.len() >= MAX_RESPONSE || response_complete(&response) {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let body_start = match parsed.parse(&response) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("incomplete HTTP response".into()),
        Err(e) => return Err(format!("not an HTTP response: {e}")),
    };
    let status = parsed.code.unwrap_or(0);
    let chunked = parsed.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let status_ok = if check.expect.is_empty() {
        (200..400).contains(&status)
    } else {
        check.expect.contains(&status)
    };
    if !status_ok {
        return Err(format!("HTTP {status}"));
    }
    let raw = &response[body_start..];
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    if let Some(needle) = &check.body
        && !contains(&body, needle.as_bytes())
    {
        return Err(format!("HTTP {status}, body lacks {needle:?}"));
    }
    Ok((format!("HTTP {status}"), parse_load(&body)))
}

/// A load report in a check's body: `"load": 0.73` (JSON, a fraction) or `load=73%`; a bare
/// number above 1.5 is read as a percentage. `None` when absent or not a sane value.
pub fn parse_load(body: &[u8]) -> Option<f64> {
    let at = body.windows(4).position(|w| w == b"load")?;
    let rest = &body[at + 4..];
    let start = rest
        .iter()
        .position(|b| !matches!(b, b'"' | b' ' | b':' | b'=' | b'\t'))?;
    let rest = &rest[start..];
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'.'))
        .unwrap_or(rest.len());
    let value: f64 = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    let percent = rest.get(end) == Some(&b'%') || value > 1.5;
    let load = if percent { value / 100.0 } else { value };
    (load.is_finite() && (0.0..=1.5).contains(&load)).then_some(load)
}

/// True once headers are in and a Content-Length body (or a final chunk) has arrived, so a
/// keep-alive server that ignores `Connection: close` does not hold the probe open.
fn response_complete(response: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(start)) = parsed.parse(response) else {
        return false;
    };
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        return response.len() >= start + len;
    }
    if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        return response.ends_with(b"0\r\n\r\n");
    }
    false
}

/// Decodes a chunked body as far as it is complete.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        raw = &raw[line_end + 2..];
        if size == 0 || raw.len() < size {
            out.extend_from_slice(&raw[..size.min(raw.len())]);
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or(&[]);
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The RTMP handshake's first half: C0+C1 out, S0+S1 back. Proves an RTMP server answers,
/// not just that the port is open. C2 is not sent; the server sees a client that left.
async fn rtmp(mut stream: TcpStream) -> Result<String, String> {
    let mut c0c1 = vec![0u8; 1 + RTMP_HANDSHAKE_SIZE];
    c0c1[0] = RTMP_VERSION;
    // C1: 4 bytes time, 4 zero bytes, then bytes the server echoes in S2 (any will do).
    for (i, b) in c0c1[9..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    stream
        .write_all(&c0c1)
        .await
        .map_err(|e| format!("send C0+C1: {}", describe(&e)))?;
    let mut s0s1 = vec![0u8; 1 + RTMP_HANDSHAKE_SIZE];
    stream
        .read_exact(&mut s0s1)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "RTMP: connection closed before S0+S1".to_string(),
            _ => format!("RTMP: read S0+S1: {}", describe(&e)),
        })?;
    if s0s1[0] != RTMP_VERSION {
        return Err(format!("RTMP: S0 version {} (expected 3)", s0s1[0]));
    }
    Ok("RTMP S0+S1".into())
}

/// Accepts any certificate: only for checks that say `verify: false`.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(
            dechunk(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"),
            b"Wikipedia"
        );
        assert_eq!(dechunk(b"4\r\nWi"), b"Wi");
        assert_eq!(dechunk(b"zz\r\n"), b"");
    }

    #[test]
    fn loads_in_bodies() {
        assert_eq!(parse_load(br#"{"status":"ok","load": 0.73}"#), Some(0.73));
        assert_eq!(parse_load(b"ok load=85%"), Some(0.85));
        assert_eq!(parse_load(b"load: 42"), Some(0.42));
        assert_eq!(parse_load(b"ok"), None);
        assert_eq!(parse_load(b"load=900"), None);
    }

    #[test]
    fn completeness() {
        assert!(response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        ));
        assert!(!response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok"
        ));
        assert!(response_complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        ));
        assert!(!response_complete(b"HTTP/1.1 200 OK\r\n\r\nok"));
    }
}
