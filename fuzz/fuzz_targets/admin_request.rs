//! Any admin request (method, path and query, Authorization, Host and Origin headers, body) through the admin
//! interface's router, with a stand-in publisher that answers every command and the state
//! view of a server with no zones: a status code, never a panic. The token check runs on
//! every request.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use geosteer::admin::Readers;
use geosteer::answer::{Command, CommandError, Publisher};
use geosteer::geo::GeoDb;
use geosteer::latency::feed::FeedBatch;
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
                    Command::SetOverride {
                        zone, node, reply, ..
                    } => {
                        let _ = reply.send(Err(CommandError::NoSuchNode { zone, node }));
                    }
                    Command::Reload { reply } => {
                        let _ = reply.send(Err(CommandError::NoFiles));
                    }
                    Command::Feed { reply, .. } => {
                        // A real refusal: a batch for a zone that is not served.
                        let refused = serde_json::from_str::<FeedBatch>(r#"{"zone": "not.served"}"#)
                            .ok()
                            .and_then(|b| b.validate(&[], None, std::time::UNIX_EPOCH).err());
                        let _ = reply.send(refused.map_or(Ok(0), Err));
                    }
                    Command::Fleet(_) => {}
                }
            }
        });
        // What the admin interface reads: the published state of a server with no zones.
        let geo = GeoDb::open(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/geo-city.mmdb"
        )))
        .expect("the test GeoIP database");
        let publisher = Publisher::new(Vec::new(), Arc::new(geo), None);
        let read = Readers {
            snapshot: publisher.reader(),
            view: publisher.view_reader(),
        };
        let access = geosteer::admin::Access {
            token: Some("s3cret".into()),
            names: vec!["admin.example".into()],
        };
        let router = geosteer::admin::router(
            access,
            commands,
            read,
            None,
            serde_json::json!({}),
        );
        (runtime, router)
    })
}

fuzz_target!(|data: &[u8]| {
    // method selector | path | authorization | host | origin | body, newline-separated
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(5, |&b| b == b'\n');
    let (Some(path), Some(auth)) = (parts.next(), parts.next()) else {
        return;
    };
    let host = parts.next().unwrap_or_default();
    let origin = parts.next().unwrap_or_default();
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
    if selector & 0x20 != 0 {
        request = request.header("host", host);
    }
    if selector & 0x10 != 0 {
        request = request.header("origin", origin);
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
