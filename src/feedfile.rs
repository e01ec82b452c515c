//! The latency feed as a file, for operators who push measurements with configuration
//! management: polled for changes once a second, parsed, and sent to the publisher like an
//! admin-interface batch. A bad file is logged with its reasons and changes nothing.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::answer::Command;
use crate::latency::feed::{FeedBatch, MAX_BATCH_BYTES};
use crate::metrics as m;

/// How often the file's modification time is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The file's text, refused when larger than a batch may be (a file is read whole into
/// memory, so its size is bounded like an HTTP body's), or when it is not UTF-8.
async fn read_capped(path: &std::path::Path) -> std::io::Result<String> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await?;
    let mut bytes = Vec::new();
    // One byte more than allowed tells a file at the cap from one past it.
    file.take(MAX_BATCH_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await?;
    if bytes.len() > MAX_BATCH_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_BATCH_BYTES} bytes"),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()))
}

/// Watches `path` until the publisher goes away.
pub async fn watch(path: PathBuf, commands: mpsc::Sender<Command>) {
    let mut seen: Option<SystemTime> = None;
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    loop {
        tick.tick().await;
        let modified = match tokio::fs::metadata(&path).await.and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(e) => {
                if seen.is_some() {
                    warn!(path = %path.display(), error = %e, "latency feed file unreadable");
                    seen = None;
                }
                continue;
            }
        };
        if seen == Some(modified) {
            continue;
        }
        seen = Some(modified);
        let text = match read_capped(&path).await {
            Ok(t) => t,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "latency feed file unreadable; nothing applied");
                metrics::counter!(m::FEED_BATCHES, "result" => "rejected").increment(1);
                continue;
            }
        };
        let batch: FeedBatch = match serde_json::from_str(&text) {
            Ok(b) => b,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "latency feed file is not a valid batch; nothing applied");
                metrics::counter!(m::FEED_BATCHES, "result" => "rejected").increment(1);
                continue;
            }
        };
        let (reply, answer) = oneshot::channel();
        if commands.send(Command::Feed { batch, reply }).await.is_err() {
            return;
        }
        match answer.await {
            Ok(Ok(applied)) => info!(path = %path.display(), applied, "latency feed file applied"),
            Ok(Err(errors)) => {
                warn!(path = %path.display(), errors = %errors, "latency feed file rejected; nothing applied")
            }
            Err(_) => return,
        }
    }
}
