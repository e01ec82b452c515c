//! One probe of one node: connect, speak the check's protocol, judge the answer.
//!
//! Every probe is bounded by its timeout as a whole (connect, TLS, request, response), reads at
//! most `MAX_RESPONSE` bytes, and reports what it saw in words an operator can act on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::policy::{HealthCheck, HttpProbe, Probe};

/// Largest HTTP response body read.
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

/// Each kind connects for itself: a kind that is not TCP (a UDP echo, say) is one more arm
/// and one more function here.
async fn run(check: &HealthCheck, tls: &TlsConfigs) -> Result<Passed, String> {
    let target = check.target;
    match &check.probe {
        Probe::Tcp => connect(target)
            .await
            .map(|_| (format!("connected to {target}"), None)),
        Probe::Http(http) => get(connect(target).await?, http, target).await,
        Probe::Https(http, settings) => {
            let stream = connect(target).await?;
            let name = settings
                .sni
                .as_deref()
                .or(http.host.as_deref())
                .map(|n| ServerName::try_from(n.to_string()))
                .unwrap_or_else(|| Ok(ServerName::IpAddress(target.ip().into())))
                .map_err(|e| format!("bad TLS server name: {e}"))?;
            let config = if settings.verify {
                &tls.verifying
            } else {
                &tls.insecure
            };
            let stream = TlsConnector::from(Arc::clone(config))
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            get(stream, http, target).await
        }
        Probe::Rtmp => rtmp(connect(target).await?)
            .await
            .map(|detail| (detail, None)),
    }
}

async fn connect(target: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect {target}: {}", describe(&e)))
}

fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

/// GET the path through hyper's HTTP/1.1 client, read at most `MAX_RESPONSE` bytes of the
/// body, judge status and body.
async fn get<S>(stream: S, check: &HttpProbe, target: SocketAddr) -> Result<Passed, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let host = check.host.clone().unwrap_or_else(|| match target {
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        v4 => v4.to_string(),
    });
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
    // Ends with the probe: the sender and the response are dropped when it returns.
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(check.path.as_str())
        .header(hyper::header::HOST, host)
        .header(
            hyper::header::USER_AGENT,
            concat!("geosteer-health/", env!("CARGO_PKG_VERSION")),
        )
        .header(hyper::header::ACCEPT, "*/*")
        .header(hyper::header::CONNECTION, "close")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let outcome = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status().as_u16();
        let status_ok = if check.expect.is_empty() {
            (200..400).contains(&status)
        } else {
            check.expect.contains(&status)
        };
        if !status_ok {
            return Err(format!("HTTP {status}"));
        }
        let body = read_body(response.into_body()).await?;
        if let Some(needle) = &check.body
            && !contains(&body, needle.as_bytes())
        {
            return Err(format!("HTTP {status}, body lacks {needle:?}"));
        }
        Ok((format!("HTTP {status}"), parse_load(&body)))
    }
    .await;
    connection.abort();
    outcome
}

/// The body's first `MAX_RESPONSE` bytes. A peer that closes abruptly after sending some
/// (a TLS peer without close_notify) still sent what it sent.
async fn read_body(mut body: hyper::body::Incoming) -> Result<Vec<u8>, String> {
    use http_body_util::BodyExt as _;
    let mut out = Vec::new();
    while out.len() < MAX_RESPONSE {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let room = MAX_RESPONSE - out.len();
                    out.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(_)) if !out.is_empty() => break,
            Some(Err(e)) => return Err(format!("read response: {e}")),
        }
    }
    Ok(out)
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
    fn loads_in_bodies() {
        assert_eq!(parse_load(br#"{"status":"ok","load": 0.73}"#), Some(0.73));
        assert_eq!(parse_load(b"ok load=85%"), Some(0.85));
        assert_eq!(parse_load(b"load: 42"), Some(0.42));
        assert_eq!(parse_load(b"ok"), None);
        assert_eq!(parse_load(b"load=900"), None);
    }
}
