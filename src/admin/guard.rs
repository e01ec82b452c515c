//! Who may use the admin interface, and from where. The threat is the operator's own
//! browser: any web page it visits can send requests to `127.0.0.1:8053` (a form POST
//! needs no permission), and DNS rebinding can point a name the attacker owns at that
//! address and read the answers as same-origin.
//!
//! - **Host**: every request must name this interface: an IP literal (a rebinding attack
//!   always uses a name), `localhost`, or a name given with `--admin-host`. Anything else is
//!   421 Misdirected Request, on every route.
//! - **Writes** (POST) must be requests a web page cannot send cross-site without a CORS
//!   preflight, which this interface never grants: a bearer token, a JSON body
//!   (`Content-Type: application/json`) or the header `X-Geosteer` — or a request with none
//!   of the marks a browser puts on every POST (`Origin`, `Sec-Fetch-Site`) and on every
//!   body (`Content-Type`), as `curl -XPOST` sends. A POST whose `Origin` is not this
//!   interface's own, or that the browser marks as cross-site or same-site
//!   (`Sec-Fetch-Site`), is refused (403) whatever it carries.
//! - **Basic authentication** (how a browser logs in to the status page, and then sends on
//!   its own with every request to this address) is accepted for reads only: with a token
//!   configured, a write needs the bearer token.

use axum::http::{HeaderMap, Method, header};

/// Who may use the interface: its token, and the names it may be reached by.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The token every request but the probes must carry, if any: one token, or lines of
    /// `name token` (see [`token_holders`]), so that changes name who made them.
    pub token: Option<String>,
    /// Host names (not IP literals, which are always accepted) the interface answers to
    /// beside `localhost`.
    pub names: Vec<String>,
}

/// Who holds each token of a token file: lines of `name token`, or one bare token (held by
/// `admin`); blank lines and `#` comments skipped. An error names the line.
pub fn token_holders(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut holders: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (name, secret) = match words.as_slice() {
            [secret] => ("admin", *secret),
            [name, secret] => (*name, *secret),
            _ => {
                return Err(format!(
                    "line {}: expected `name token` or one token",
                    i + 1
                ));
            }
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        {
            return Err(format!(
                "line {}: a name is letters, digits and - _ . @",
                i + 1
            ));
        }
        if holders.iter().any(|(n, s)| n == name || s == secret) {
            return Err(format!("line {}: a name or token given twice", i + 1));
        }
        holders.push((name.to_string(), secret.to_string()));
    }
    if holders.is_empty() {
        return Err("no token in it".into());
    }
    Ok(holders)
}

/// Why a request is refused before it reaches a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The Host header names something else: 421.
    Host(String),
    /// A write a web page could have forged, or that a browser says comes from another
    /// site: 403.
    CrossSite(&'static str),
    /// A write authenticated with Basic credentials only: 403.
    BasicForWrite,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Host(host) => write!(
                f,
                "this admin interface does not answer to Host '{host}': reach it by address, as \
                 localhost, or give --admin-host {host}"
            ),
            Refusal::CrossSite(why) => write!(
                f,
                "refused: {why}; a change must carry a bearer token, a JSON body \
                 (Content-Type: application/json) or the header X-Geosteer: 1 (or be a bare \
                 curl -XPOST), and come from this interface's own origin"
            ),
            Refusal::BasicForWrite => write!(
                f,
                "Basic authentication is accepted for reading only: send the token as \
                 Authorization: Bearer TOKEN to change anything"
            ),
        }
    }
}

/// The host of a Host or Origin authority, without its port, and with an IPv6 literal's
/// brackets removed.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

/// Whether `authority` (a Host header's value) names this interface.
fn own_host(authority: &str, access: &Access) -> bool {
    let host = host_of(authority).trim_end_matches('.');
    host.parse::<std::net::IpAddr>().is_ok()
        || host.eq_ignore_ascii_case("localhost")
        || (access.names.iter()).any(|name| host.eq_ignore_ascii_case(name.trim_end_matches('.')))
}

/// Checks a request against the rules above (the token itself is checked after).
pub(super) fn check(method: &Method, headers: &HeaderMap, access: &Access) -> Result<(), Refusal> {
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    // HTTP/1.1 requires a Host; a request without one comes from no browser.
    if let Some(authority) = header(header::HOST)
        && !own_host(authority, access)
    {
        return Err(Refusal::Host(authority.chars().take(100).collect()));
    }
    if method == Method::GET || method == Method::HEAD {
        return Ok(());
    }
    if header(header::HeaderName::from_static("sec-fetch-site"))
        .is_some_and(|site| site == "cross-site" || site == "same-site")
    {
        return Err(Refusal::CrossSite(
            "the browser says it comes from another site",
        ));
    }
    if let Some(origin) = header(header::ORIGIN) {
        let origin_authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or(origin);
        let same =
            header(header::HOST).is_some_and(|host| host.eq_ignore_ascii_case(origin_authority));
        if !same {
            return Err(Refusal::CrossSite("its Origin is another site"));
        }
    }
    let authorization = header(header::AUTHORIZATION).unwrap_or_default();
    let bearer = authorization
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "));
    let basic = authorization
        .get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic "));
    if access.token.is_some() && basic && !bearer {
        return Err(Refusal::BasicForWrite);
    }
    let json = header(header::CONTENT_TYPE).is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    let marked = headers.contains_key("x-geosteer");
    // A browser marks every POST it sends (Origin, Sec-Fetch-Site) and every form or
    // script body (Content-Type); a request with none of them comes from a tool such as
    // curl, not from a page.
    let unmarked = !headers.contains_key(header::ORIGIN)
        && !headers.contains_key("sec-fetch-site")
        && !headers.contains_key(header::CONTENT_TYPE);
    if bearer || json || marked || unmarked {
        Ok(())
    } else {
        Err(Refusal::CrossSite("a web page could have sent it"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn hosts_must_name_this_interface() {
        let access = Access {
            token: None,
            names: vec!["gs1.example.net".into()],
        };
        for ok in [
            "127.0.0.1:8053",
            "[::1]:8053",
            "localhost:8053",
            "GS1.example.net",
            "10.0.0.5",
        ] {
            assert_eq!(
                check(&Method::GET, &headers(&[("host", ok)]), &access),
                Ok(()),
                "{ok}"
            );
        }
        for bad in ["rebind.evil.example:8053", "evil", "localhost.evil.example"] {
            assert!(
                matches!(
                    check(&Method::GET, &headers(&[("host", bad)]), &access),
                    Err(Refusal::Host(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn writes_need_a_request_a_page_cannot_forge() {
        let open = Access::default();
        let host = ("host", "127.0.0.1:8053");
        let post =
            |pairs: &[(&str, &str)], access: &Access| check(&Method::POST, &headers(pairs), access);
        // A form POST from another site, with or without its Origin; a script's body.
        let form = ("content-type", "application/x-www-form-urlencoded");
        assert!(post(&[host, form], &open).is_err());
        assert!(post(&[host, ("content-type", "text/plain")], &open).is_err());
        assert!(post(&[host, ("origin", "http://evil.example")], &open).is_err());
        // curl -XPOST: none of a browser's marks.
        assert_eq!(post(&[host], &open), Ok(()));
        assert!(post(&[host, form, ("origin", "http://evil.example")], &open).is_err());
        assert!(
            post(
                &[
                    host,
                    ("content-type", "application/json"),
                    ("origin", "http://evil.example")
                ],
                &open
            )
            .is_err()
        );
        assert!(
            post(
                &[host, ("x-geosteer", "1"), ("sec-fetch-site", "cross-site")],
                &open
            )
            .is_err()
        );
        // curl, scripts and the page itself.
        assert_eq!(post(&[host, ("x-geosteer", "1")], &open), Ok(()));
        assert_eq!(
            post(
                &[host, ("content-type", "application/json; charset=utf-8")],
                &open
            ),
            Ok(())
        );
        assert_eq!(
            post(
                &[
                    host,
                    ("x-geosteer", "1"),
                    ("origin", "http://127.0.0.1:8053"),
                    ("sec-fetch-site", "same-origin")
                ],
                &open
            ),
            Ok(())
        );
        // With a token: Basic (a browser's cached login) reads, never writes.
        let secured = Access {
            token: Some("s3cret".into()),
            names: Vec::new(),
        };
        let basic = ("authorization", "Basic eDpzM2NyZXQ=");
        assert_eq!(
            post(&[host, basic, ("x-geosteer", "1")], &secured),
            Err(Refusal::BasicForWrite)
        );
        assert_eq!(
            check(&Method::GET, &headers(&[host, basic]), &secured),
            Ok(())
        );
        assert_eq!(
            post(&[host, ("authorization", "Bearer s3cret")], &secured),
            Ok(())
        );
    }
}
