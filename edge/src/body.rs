//! HTTP bodies over wasi:http: a request's, read up to a limit; a response's, written in pieces
//! of at most 4 KiB (the most one `blocking-write-and-flush` takes), each waiting until the host
//! has taken the one before (backpressure).

use rill_api::ApiError;
use serde_json::Value;
use wasip2::http::types::{Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasip2::io::streams::{OutputStream, StreamError};

/// Most bytes one `blocking-write-and-flush` may take (wasi:io's contract).
const PIECE: usize = 4096;

/// The request's body, or a 413 past `limit` bytes.
pub fn read_body(request: &IncomingRequest, limit: usize) -> Result<Vec<u8>, ApiError> {
    let unreadable = |what: String| ApiError::invalid(format!("the request body could not be read: {what}"), None);
    let body = request
        .consume()
        .map_err(|()| unreadable("it was taken already".into()))?;
    let stream = body.stream().map_err(|()| unreadable("no stream".into()))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => return Err(unreadable(e.to_debug_string())),
        }
        if bytes.len() > limit {
            return Err(ApiError::too_large(limit));
        }
    }
    drop(stream);
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

/// Where a request's one response goes.
pub struct Responder(pub ResponseOutparam);

impl Responder {
    /// Sends the status and headers; the body follows through the returned writer.
    pub fn start(self, status: u16, headers: &[(&str, &str)]) -> BodyWriter {
        let list: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let fields = Fields::from_list(&list).expect("the worker's header names and values are valid");
        let response = OutgoingResponse::new(fields);
        response.set_status_code(status).expect("a valid status code");
        let body = response.body().expect("a new response's body is there to take");
        ResponseOutparam::set(self.0, Ok(response));
        let stream = body.write().expect("a new body's stream is there to take");
        BodyWriter {
            stream: Some(stream),
            body: Some(body),
        }
    }

    pub fn json(self, status: u16, value: &Value) {
        let mut body = self.start(status, &[("content-type", "application/json")]);
        body.write(value.to_string().as_bytes());
        body.finish();
    }

    /// An error as `rill serve` answers it: its status, its JSON body, `Retry-After` where
    /// waiting helps.
    pub fn error(self, e: &ApiError) {
        let retry: &[(&str, &str)] = if matches!(e.status, 429 | 503) {
            &[("retry-after", "1")]
        } else {
            &[]
        };
        let headers: Vec<(&str, &str)> = [("content-type", "application/json")]
            .into_iter()
            .chain(retry.iter().copied())
            .collect();
        let mut body = self.start(e.status, &headers);
        body.write(e.body().to_string().as_bytes());
        body.finish();
    }
}

pub struct BodyWriter {
    /// Dropped before the body is finished, as wasi:http requires.
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
}

impl BodyWriter {
    /// Writes `bytes`; false once the client is gone (the stream closed or failed).
    pub fn write(&mut self, bytes: &[u8]) -> bool {
        let Some(stream) = &self.stream else { return false };
        for piece in bytes.chunks(PIECE) {
            if stream.blocking_write_and_flush(piece).is_err() {
                self.stream = None;
                return false;
            }
        }
        true
    }

    pub fn finish(mut self) {
        self.stream = None;
        if let Some(body) = self.body.take() {
            // A client that has gone cannot be told anything more.
            let _ = OutgoingBody::finish(body, None);
        }
    }
}
