//! The OpenAI-compatible endpoints: chat completions and completions (JSON or SSE), models,
//! health and metrics.

use super::stream::{CancelOnDrop, End, Item, TokenStream};
use super::worker::Job;
use super::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rill_api::{sse_event, ApiError, Endpoint, ResponseWriter, TokenOut};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// An [`ApiError`] as an HTTP response: its status, its JSON body, and `Retry-After` where
/// waiting helps.
pub fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(e.body())).into_response();
    if matches!(e.status, 429 | 503) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

pub async fn chat_completions(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    generate(state, Endpoint::Chat, headers, body).await
}

pub async fn completions(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    generate(state, Endpoint::Completion, headers, body).await
}

async fn generate(state: Arc<AppState>, endpoint: Endpoint, headers: HeaderMap, body: Body) -> Response {
    let arrived = Instant::now();
    let name = match endpoint {
        Endpoint::Chat => "chat_completions",
        Endpoint::Completion => "completions",
    };
    let response = match start(&state, endpoint, &headers, body, arrived).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    state.metrics.count_request(name, response.status().as_u16());
    response
}

async fn start(
    state: &Arc<AppState>,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Body,
    arrived: Instant,
) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, state.body_limit)
        .await
        .map_err(|_| ApiError::too_large(state.body_limit))?;
    let request = state.model.parse(endpoint, &bytes)?;
    let stream = Arc::new(TokenStream::new(arrived));
    state.engine.submit(Job {
        prompt: request.prompt.clone(),
        params: request.params.clone(),
        stream: stream.clone(),
        trap_after: fault_after(headers, "x-rill-inject-trap"),
        lose_gpu_after: fault_after(headers, "x-rill-lose-gpu"),
    })?;
    let guard = CancelOnDrop(stream.clone());
    // The status is decided by how the generation starts: a prompt the engine refuses (too
    // long, say) is a 4xx, not a 200 stream that ends in an error.
    let first = stream.next().await;
    if let Item::End(End::Failed(e)) = first {
        return Err(e);
    }
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let writer = ResponseWriter::new(endpoint, state.next_id(), created, &state.model.id, request.logprobs);
    if request.stream {
        Ok(sse_response(SseState {
            stream,
            _guard: guard,
            writer,
            include_usage: request.include_usage,
            first: true,
            pending: Some(first),
            done: false,
        }))
    } else {
        complete(&stream, first, &writer)
            .await
            .map(|v| axum::Json(v).into_response())
    }
}

/// Test builds: `x-rill-inject-trap: N` makes the engine trap after N tokens of this request,
/// `x-rill-lose-gpu: N` loses its GPU then.
fn fault_after(headers: &HeaderMap, name: &str) -> Option<usize> {
    if !cfg!(feature = "fault-injection") {
        return None;
    }
    headers.get(name)?.to_str().ok()?.parse().ok()
}

/// Waits for the whole generation and writes the one JSON response.
async fn complete(stream: &TokenStream, first: Item, writer: &ResponseWriter) -> Result<serde_json::Value, ApiError> {
    let mut tokens: Vec<TokenOut> = Vec::new();
    let mut item = first;
    loop {
        match item {
            Item::Tokens(t) => tokens.extend(t),
            Item::End(End::Done { finish, usage, timings }) => {
                return Ok(writer.complete(&tokens, finish, usage, &timings))
            }
            Item::End(End::Failed(e)) => return Err(e),
        }
        item = stream.next().await;
    }
}

/// A stream's progress as the SSE body is written.
struct SseState {
    stream: Arc<TokenStream>,
    /// Dropped with the body when the client disconnects: cancels the generation.
    _guard: CancelOnDrop,
    writer: ResponseWriter,
    include_usage: bool,
    first: bool,
    pending: Option<Item>,
    done: bool,
}

fn sse_response(state: SseState) -> Response {
    let events = futures_util::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let item = match s.pending.take() {
            Some(item) => item,
            None => s.stream.next().await,
        };
        let text = match item {
            Item::Tokens(tokens) => {
                let chunk = s.writer.chunk(&tokens, s.first);
                s.first = false;
                sse_event(&chunk)
            }
            Item::End(End::Done { finish, usage, timings }) => {
                s.done = true;
                s.writer.stream_end(finish, usage, &timings, s.include_usage)
            }
            // Mid-stream failures (the engine trapped) end the stream with an error event, as
            // OpenAI's and llama-server's streams do.
            Item::End(End::Failed(e)) => {
                s.done = true;
                sse_event(&e.body())
            }
        };
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(text)), s))
    });
    let mut response = Body::from_stream(events).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies (nginx) must not buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

pub async fn models(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(state.model.list()).into_response()
}

pub async fn model(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if id == state.model.id {
        axum::Json(state.model.object()).into_response()
    } else {
        error_response(&ApiError::model_not_found(&id))
    }
}

pub async fn health() -> Response {
    axum::Json(rill_api::health()).into_response()
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

pub async fn not_found(uri: axum::http::Uri) -> Response {
    error_response(&ApiError::not_found(uri.path()))
}
