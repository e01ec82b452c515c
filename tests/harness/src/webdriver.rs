//! A headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`):
//! the status page tests load the real page from the real binary, run script in it and take
//! screenshots. chromedriver is started on a free loopback port and killed when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::etcd::free_port;

/// A browser session.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

/// One HTTP/1.1 request to chromedriver, with a generous timeout (starting the browser
/// takes seconds on a busy machine); the answer's JSON.
fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    // chromedriver keeps the connection open whatever the request says: read the head,
    // then exactly the body its length announces (or chunks up to the last one).
    let mut response = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let head_end = loop {
        if let Some(at) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the head".into());
        }
        response.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked =
        head.contains("transfer-encoding: chunked") || head.contains("transfer-encoding:chunked");
    loop {
        let have = response.len() - head_end;
        let done = match length {
            Some(length) => have >= length,
            None if chunked => response.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&response[head_end..]).into_owned();
    let body = if chunked { dechunk(&body) } else { body };
    let value: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if value["value"]["error"].is_string() {
        return Err(format!("{method} {path}: {}", value["value"]));
    }
    Ok(value["value"].clone())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session of `width` × `height`.
    pub fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (apt-get install chromium chromium-driver)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(status) = call(addr, "GET", "/status", None)
                && status["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}")]
            }
        }}});
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
        };
        let created = call(addr, "POST", "/session", Some(&capabilities))
            .unwrap_or_else(|e| panic!("a Chromium session: {e}"));
        browser.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens a URL.
    pub fn goto(&self, url: &str) {
        call(
            self.addr,
            "POST",
            &self.path("/url"),
            Some(&json!({"url": url})),
        )
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Runs script in the page (`return ...;`) and gives its result.
    pub fn eval(&self, script: &str) -> Value {
        call(
            self.addr,
            "POST",
            &self.path("/execute/sync"),
            Some(&json!({"script": script, "args": []})),
        )
        .unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    /// Saves a PNG of the window.
    pub fn screenshot(&self, file: &Path) {
        let data = call(self.addr, "GET", &self.path("/screenshot"), None)
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(file, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = call(self.addr, "DELETE", &self.path(""), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
