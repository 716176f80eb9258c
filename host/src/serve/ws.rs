//! `GET /v1/ws`: generations over one WebSocket, multiplexed by the client's ids.
//!
//! Client → server (text frames, JSON):
//! - `{"type":"generate","id":ID, …}`: the other fields are a chat completion request
//!   (`messages`, …) or, with `prompt` instead of `messages`, a completion request.
//! - `{"type":"cancel","id":ID}`
//!
//! Server → client:
//! - `{"type":"token","id":ID,"index":I,"tokens":N,"text":…}`: tokens I..I+N of the reply (N > 1
//!   when the client reads slower than tokens are made: they are coalesced, not queued), with
//!   `logprobs` when asked for;
//! - `{"type":"done","id":ID,"finish_reason":…,"usage":{…},"timings":{…}}`;
//! - `{"type":"error","id":ID|null,"error":{message,type,param,code}}`.
//!
//! The server pings every 20 s and closes a connection that has not answered for 60 s. A
//! closed connection cancels its generations.

use super::stream::{End, Item, TokenStream};
use super::worker::Job;
use super::AppState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use rill_api::{ApiError, Endpoint};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const PING_EVERY: Duration = Duration::from_secs(20);
const PONG_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn upgrade(State(state): State<Arc<AppState>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| connection(socket, state))
}

type Running = Arc<Mutex<HashMap<String, Arc<TokenStream>>>>;

async fn connection(socket: WebSocket, state: Arc<AppState>) {
    let (mut sink, mut source) = socket.split();
    // A short queue of frames: when the client is slow, senders wait here and their tokens
    // pile up (as text) in their streams, to leave later as one frame.
    let (frames, mut outgoing) = mpsc::channel::<Message>(4);
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if sink.send(frame).await.is_err() {
                break;
            }
        }
    });
    let running: Running = Arc::default();
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            message = source.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    last_heard = Instant::now();
                    if let Err((id, e)) = handle(&state, text.as_str(), &running, &frames) {
                        let _ = frames.send(error_frame(id, &e)).await;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let _ = frames.send(error_frame(None, &ApiError::invalid("frames must be JSON text", None))).await;
                }
                Some(Ok(_)) => last_heard = Instant::now(), // ping, pong
                Some(Err(_)) | None => break,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > PONG_TIMEOUT || frames.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
    for stream in running.lock().unwrap_or_else(|e| e.into_inner()).values() {
        stream.cancel();
    }
    drop(frames);
    let _ = writer.await;
}

fn error_frame(id: Option<String>, e: &ApiError) -> Message {
    Message::Text(
        json!({ "type": "error", "id": id, "error": e.object() })
            .to_string()
            .into(),
    )
}

/// Acts on one client frame; errors carry the id they concern.
fn handle(
    state: &Arc<AppState>,
    text: &str,
    running: &Running,
    frames: &mpsc::Sender<Message>,
) -> Result<(), (Option<String>, ApiError)> {
    let arrived = Instant::now();
    let mut frame: serde_json::Map<String, Value> = serde_json::from_str(text).map_err(|e| {
        (
            None,
            ApiError::invalid(format!("the frame is not a JSON object: {e}"), None),
        )
    })?;
    let id = match frame.remove("id") {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err((
                None,
                ApiError::invalid("every frame needs an `id` (string or number)", Some("id")),
            ))
        }
    };
    let fail = |e: ApiError| (Some(id.clone()), e);
    match frame.remove("type").as_ref().and_then(Value::as_str) {
        Some("cancel") => {
            let stream = running.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned();
            stream
                .ok_or_else(|| {
                    fail(ApiError::invalid(
                        format!("no generation `{id}` is running"),
                        Some("id"),
                    ))
                })?
                .cancel();
            Ok(())
        }
        Some("generate") => {
            let endpoint = if frame.contains_key("messages") {
                Endpoint::Chat
            } else {
                Endpoint::Completion
            };
            frame.remove("stream");
            let request = state
                .model
                .parse(endpoint, Value::Object(frame).to_string().as_bytes())
                .map_err(fail)?;
            let stream = Arc::new(TokenStream::new(arrived));
            {
                let mut r = running.lock().unwrap_or_else(|e| e.into_inner());
                if r.contains_key(&id) {
                    return Err(fail(ApiError::invalid(
                        format!("generation `{id}` is already running"),
                        Some("id"),
                    )));
                }
                r.insert(id.clone(), stream.clone());
            }
            let submitted = state.engine.submit(Job {
                prompt: request.prompt,
                params: request.params,
                stream: stream.clone(),
                trap_after: None,
                lose_gpu_after: None,
            });
            state
                .metrics
                .count_request("ws", submitted.as_ref().map_or_else(|e| e.status, |_| 200));
            if let Err(e) = submitted {
                running.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                return Err(fail(e));
            }
            tokio::spawn(forward(id, stream, request.logprobs, running.clone(), frames.clone()));
            Ok(())
        }
        other => Err(fail(ApiError::invalid(
            format!("unknown frame type {other:?}: expected \"generate\" or \"cancel\""),
            Some("type"),
        ))),
    }
}

/// Sends one generation's tokens, coalesced to the pace the client reads at, then its end.
async fn forward(
    id: String,
    stream: Arc<TokenStream>,
    logprobs: bool,
    running: Running,
    frames: mpsc::Sender<Message>,
) {
    let mut index = 0;
    loop {
        let frame = match stream.next().await {
            Item::Tokens(tokens) => {
                let text: String = tokens.iter().map(|t| t.text.as_str()).collect();
                let mut f = json!({ "type": "token", "id": id, "index": index, "tokens": tokens.len(), "text": text });
                if logprobs {
                    f["logprobs"] = tokens
                        .iter()
                        .filter_map(|t| t.logprob.as_ref())
                        .map(rill_api::logprob_json)
                        .collect();
                }
                index += tokens.len();
                f
            }
            Item::End(End::Done { finish, usage, timings }) => {
                json!({ "type": "done", "id": id, "finish_reason": finish.name(), "usage": rill_api::usage_json(usage), "timings": timings })
            }
            Item::End(End::Failed(e)) => {
                let cancelled = e.code == Some("cancelled");
                if cancelled {
                    json!({ "type": "done", "id": id, "finish_reason": "cancelled", "usage": null, "timings": null })
                } else {
                    json!({ "type": "error", "id": id, "error": e.object() })
                }
            }
        };
        let last = frame["type"] != "token";
        if frames.send(Message::Text(frame.to_string().into())).await.is_err() {
            stream.cancel();
            break;
        }
        if last {
            break;
        }
    }
    running.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
}
