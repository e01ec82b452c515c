//! A small etcd v3 client over etcd's JSON gateway (`/v3/kv/range`, `/v3/kv/put`,
//! `/v3/lease/grant`, `/v3/watch`, …), which every etcd since 3.4 serves on its client URLs.
//! The gateway needs only HTTP/1.1 and JSON, so the build needs no protobuf compiler; keys
//! and values travel base64-encoded, as the gateway wants.
//!
//! Every call has a deadline and tries each endpoint in turn, so one dead member costs a
//! timeout, not an outage; nothing here is ever awaited on the query path.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// Longest one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered in time.
    #[error("no etcd endpoint answered ({0})")]
    Unreachable(String),
    /// An endpoint answered with an error.
    #[error("etcd refused the request: {0}")]
    Refused(String),
    /// The answer was not what the gateway sends.
    #[error("unexpected answer from etcd: {0}")]
    Malformed(String),
}

/// A key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A key was written.
    Put(KeyValue),
    /// A key was deleted (or its lease expired).
    Delete(String),
}

/// Client URLs of the cluster's members (`http://127.0.0.1:2379`).
#[derive(Debug, Clone)]
pub struct Etcd {
    endpoints: Vec<String>,
}

/// A host and port from a client URL.
fn authority(endpoint: &str) -> Result<String, EtcdError> {
    endpoint
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/').to_string())
        .ok_or_else(|| {
            EtcdError::Refused(format!("{endpoint}: only http:// endpoints are supported"))
        })
}

fn b64(text: &str) -> String {
    B64.encode(text.as_bytes())
}

fn unb64(text: &str) -> Result<String, EtcdError> {
    let bytes = B64
        .decode(text)
        .map_err(|e| EtcdError::Malformed(format!("base64: {e}")))?;
    String::from_utf8(bytes).map_err(|e| EtcdError::Malformed(format!("utf-8: {e}")))
}

/// The end of a prefix range: the prefix with its last byte raised.
fn range_end(prefix: &str) -> String {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last = last.saturating_add(1);
    }
    B64.encode(end)
}

#[derive(Deserialize)]
struct RawKv {
    key: String,
    #[serde(default)]
    value: String,
}

impl RawKv {
    fn decode(&self) -> Result<KeyValue, EtcdError> {
        Ok(KeyValue {
            key: unb64(&self.key)?,
            value: unb64(&self.value)?,
        })
    }
}

impl Etcd {
    /// A client of these endpoints (`http://HOST:PORT`).
    pub fn new(endpoints: Vec<String>) -> Result<Etcd, EtcdError> {
        for endpoint in &endpoints {
            authority(endpoint)?;
        }
        if endpoints.is_empty() {
            return Err(EtcdError::Refused("no endpoints".into()));
        }
        Ok(Etcd { endpoints })
    }

    /// POSTs a JSON body to a gateway path on the first endpoint that answers.
    async fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            match tokio::time::timeout(REQUEST_TIMEOUT, post(endpoint, path, body)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(EtcdError::Refused(why))) => return Err(EtcdError::Refused(why)),
                Ok(Err(e)) => failures.push(format!("{endpoint}: {e}")),
                Err(_) => failures.push(format!("{endpoint}: timed out")),
            }
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }

    /// Every key under `prefix`, and the store's revision they were read at.
    pub async fn range_prefix(&self, prefix: &str) -> Result<(i64, Vec<KeyValue>), EtcdError> {
        let answer = self
            .call(
                "/v3/kv/range",
                &json!({"key": b64(prefix), "range_end": range_end(prefix)}),
            )
            .await?;
        let revision = revision_of(&answer)?;
        let kvs: Vec<RawKv> = match answer.get("kvs") {
            Some(kvs) => serde_json::from_value(kvs.clone())
                .map_err(|e| EtcdError::Malformed(format!("kvs: {e}")))?,
            None => Vec::new(),
        };
        let kvs = kvs.iter().map(RawKv::decode).collect::<Result<_, _>>()?;
        Ok((revision, kvs))
    }

    /// Writes a key, bound to `lease` (0: none) so it goes when the lease does.
    pub async fn put(&self, key: &str, value: &str, lease: i64) -> Result<(), EtcdError> {
        let mut body = json!({"key": b64(key), "value": b64(value)});
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        self.call("/v3/kv/put", &body).await.map(drop)
    }

    /// Deletes a key.
    pub async fn delete(&self, key: &str) -> Result<(), EtcdError> {
        self.call("/v3/kv/deleterange", &json!({"key": b64(key)}))
            .await
            .map(drop)
    }

    /// A new lease of `ttl` seconds; its id.
    pub async fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let answer = self
            .call("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))
            .await?;
        number(&answer, "ID")
    }

    /// Renews a lease; false when it has expired (its keys are gone).
    pub async fn keep_alive(&self, lease: i64) -> Result<bool, EtcdError> {
        let answer = self
            .call("/v3/lease/keepalive", &json!({"ID": lease.to_string()}))
            .await?;
        let result = answer.get("result").unwrap_or(&answer);
        Ok(number(result, "TTL").unwrap_or(0) > 0)
    }

    /// Watches every key under `prefix` from `revision` on, calling `each` with each batch
    /// of events until the stream ends or fails (then the caller reads the state again and
    /// watches anew). The first endpoint that accepts the watch serves it.
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        revision: i64,
        mut each: impl FnMut(Vec<Event>),
    ) -> Result<(), EtcdError> {
        let body = json!({"create_request": {
            "key": b64(prefix),
            "range_end": range_end(prefix),
            "start_revision": revision.to_string(),
        }});
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            let stream = tokio::time::timeout(REQUEST_TIMEOUT, open(endpoint, "/v3/watch", &body));
            let mut response = match stream.await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => {
                    failures.push(format!("{endpoint}: {e}"));
                    continue;
                }
                Err(_) => {
                    failures.push(format!("{endpoint}: timed out"));
                    continue;
                }
            };
            // The gateway streams one JSON object per message; frames may split or join them.
            let mut buffer: Vec<u8> = Vec::new();
            while let Some(frame) = response.frame().await {
                let frame =
                    frame.map_err(|e| EtcdError::Unreachable(format!("{endpoint}: {e}")))?;
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                buffer.extend_from_slice(data);
                if buffer.len() > MAX_WATCH_MESSAGE {
                    return Err(EtcdError::Malformed("watch message too large".into()));
                }
                let mut stream = serde_json::Deserializer::from_slice(&buffer).into_iter::<Value>();
                let mut consumed = 0;
                while let Some(Ok(message)) = stream.next() {
                    consumed = stream.byte_offset();
                    each(events_of(&message)?);
                }
                buffer.drain(..consumed);
            }
            return Ok(());
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }
}

/// Largest watch message buffered while it arrives.
const MAX_WATCH_MESSAGE: usize = 16 << 20;

fn events_of(message: &Value) -> Result<Vec<Event>, EtcdError> {
    let Some(result) = message.get("result") else {
        if let Some(error) = message.get("error") {
            return Err(EtcdError::Refused(error.to_string()));
        }
        return Ok(Vec::new());
    };
    if result.get("canceled").and_then(Value::as_bool) == Some(true) {
        return Err(EtcdError::Refused(format!("watch canceled: {result}")));
    }
    let mut events = Vec::new();
    for event in result
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kv: RawKv = serde_json::from_value(event.get("kv").cloned().unwrap_or(Value::Null))
            .map_err(|e| EtcdError::Malformed(format!("event: {e}")))?;
        let kv = kv.decode()?;
        events.push(match event.get("type").and_then(Value::as_str) {
            Some("DELETE") => Event::Delete(kv.key),
            _ => Event::Put(kv),
        });
    }
    Ok(events)
}

fn number(value: &Value, field: &str) -> Result<i64, EtcdError> {
    match value.get(field) {
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| EtcdError::Malformed(format!("{field}: {s}"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| EtcdError::Malformed(format!("{field}: {n}"))),
        _ => Err(EtcdError::Malformed(format!("no {field} in {value}"))),
    }
}

fn revision_of(answer: &Value) -> Result<i64, EtcdError> {
    number(
        answer
            .get("header")
            .ok_or_else(|| EtcdError::Malformed("no header".into()))?,
        "revision",
    )
}

/// Opens a POST and returns the response once its head has arrived.
async fn open(
    endpoint: &str,
    path: &str,
    body: &Value,
) -> Result<hyper::Response<hyper::body::Incoming>, EtcdError> {
    let host = authority(endpoint)?;
    let stream = TcpStream::connect(&host)
        .await
        .map_err(|e| EtcdError::Unreachable(e.to_string()))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| EtcdError::Unreachable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| EtcdError::Malformed(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| EtcdError::Unreachable(e.to_string()))?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(EtcdError::Refused(format!("{status}: {text}")));
    }
    Ok(response)
}

/// POSTs and reads the whole JSON answer (bounded).
async fn post(endpoint: &str, path: &str, body: &Value) -> Result<Value, EtcdError> {
    let response = open(endpoint, path, body).await?;
    let bytes = http_body_util::Limited::new(response.into_body(), MAX_WATCH_MESSAGE)
        .collect()
        .await
        .map_err(|e| EtcdError::Unreachable(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| EtcdError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_and_watch_messages() {
        assert_eq!(range_end("/g/"), B64.encode("/g0"));
        let message = json!({"result": {"events": [
            {"kv": {"key": b64("/g/o/z/n"), "value": b64("drain")}},
            {"type": "DELETE", "kv": {"key": b64("/g/o/z/m")}}
        ]}});
        assert_eq!(
            events_of(&message).unwrap(),
            vec![
                Event::Put(KeyValue {
                    key: "/g/o/z/n".into(),
                    value: "drain".into()
                }),
                Event::Delete("/g/o/z/m".into())
            ]
        );
        assert!(events_of(&json!({"result": {"canceled": true}})).is_err());
    }
}
