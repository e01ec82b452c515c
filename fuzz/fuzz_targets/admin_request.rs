//! Any admin request (method, path and query, Authorization header, body) through the admin
//! interface's router, with a stand-in publisher that answers every command: a status code,
//! never a panic. The token check runs on every request.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::Request;
use geosteer::answer::Command;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

/// A runtime, and the router wired to a stand-in publisher on it.
fn setup() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static SETUP: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let (commands, mut received) = tokio::sync::mpsc::channel::<Command>(64);
        runtime.spawn(async move {
            while let Some(command) = received.recv().await {
                match command {
                    Command::SetOverride { reply, .. } => {
                        let _ = reply.send(Err("no such node".into()));
                    }
                    Command::Status { reply } => {
                        let _ = reply.send(Vec::new());
                    }
                    Command::Reload { reply } => {
                        let _ = reply.send(Err("no files".into()));
                    }
                    Command::Config { reply } => {
                        let _ = reply.send(serde_json::Value::Null);
                    }
                    Command::ReloadStatus { reply } => {
                        let _ = reply.send(None);
                    }
                    Command::Ready { reply } => {
                        let _ = reply.send(Ok(Vec::new()));
                    }
                    Command::Explain { reply, .. } => {
                        let _ = reply.send(Err("not steered".into()));
                    }
                    Command::Feed { reply, .. } => {
                        let _ = reply.send(Err(vec!["refused".into()]));
                    }
                    Command::Map { reply, .. } | Command::WhatIf { reply, .. } => {
                        let _ = reply.send(Err("no such name".into()));
                    }
                    Command::FleetStatus { reply } => {
                        let _ = reply.send(None);
                    }
                    Command::Fleet(_) => {}
                }
            }
        });
        let router =
            geosteer::admin::router(Some("s3cret".into()), commands, None, serde_json::json!({}));
        (runtime, router)
    })
}

fuzz_target!(|data: &[u8]| {
    // method selector | path up to a newline | authorization up to a newline | body
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == b'\n');
    let (Some(path), Some(auth)) = (parts.next(), parts.next()) else {
        return;
    };
    let body = parts.next().unwrap_or_default().to_vec();
    let method = ["GET", "POST", "PUT", "DELETE"][usize::from(selector % 4)];
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let mut request = Request::builder().method(method).uri(format!("/{path}"));
    if selector & 0x80 != 0 {
        request = request.header("authorization", auth);
    }
    if selector & 0x40 != 0 {
        request = request.header("content-type", "application/json");
    }
    let Ok(request) = request.body(Body::from(body)) else {
        return;
    };
    let (runtime, router) = setup();
    let response = runtime
        .block_on(router.clone().oneshot(request))
        .expect("the router is infallible");
    assert!(response.status().as_u16() >= 200, "{:?}", response.status());
});
