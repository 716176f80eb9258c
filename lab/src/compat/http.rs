//! The requests every server is sent (the model list, a streamed completion over SSE), and
//! `rill serve`'s checks: SSE and WebSocket, with the component backend.

use super::backends::component_host;
use super::{Matrix, Reference, PROMPT, TOKENS};
use crate::child_server::{free_port, local_agent, ChildServer};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// How long one request may take (a fresh edge instance loads the model first).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub fn check_rill_serve(matrix: &mut Matrix, model: &Path, reference: &Reference) {
    let host = component_host();
    let server = free_port().and_then(|port| {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args([
            "serve",
            "--backend",
            "component",
            "--no-record",
            "--port",
            &port.to_string(),
            "--model",
        ])
        .arg(model);
        ChildServer::start(cmd, "rill serve", port, "/health", Duration::from_secs(300))
    });
    let server = match server {
        Ok(server) => server,
        Err(e) => return matrix.record_not_checked(&host, &["SSE", "WebSocket"], &format!("{e:#}")),
    };
    matrix.record(
        &host,
        "SSE",
        streamed_completion(&server.url)
            .and_then(|(text, events)| reference.check_streamed(&text, events))
            .map(|d| format!("rill serve: {d}")),
    );
    matrix.record(
        &host,
        "WebSocket",
        websocket_completion(&server.url)
            .and_then(|(text, frames)| reference.check_streamed(&text, frames))
            .map(|d| format!("rill serve /v1/ws: {d}")),
    );
}

/// The id of the model `url` serves, from `GET /v1/models`.
pub fn served_model(url: &str) -> anyhow::Result<String> {
    let mut response = local_agent(REQUEST_TIMEOUT)
        .get(&format!("{url}/v1/models"))
        .call()
        .context("GET /v1/models")?;
    let list: Value = response.body_mut().read_json().context("GET /v1/models: the body")?;
    list["data"][0]["id"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("GET /v1/models lists no model: {list}"))
}

/// `POST /v1/completions` of [`PROMPT`], greedy, streamed: the text and the number of SSE
/// events that carried some of it.
pub fn streamed_completion(url: &str) -> anyhow::Result<(String, usize)> {
    let body =
        json!({ "prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0.0, "ignore_eos": true, "stream": true });
    let response = local_agent(REQUEST_TIMEOUT)
        .post(&format!("{url}/v1/completions"))
        .send_json(&body)
        .context("POST /v1/completions")?;
    let (mut text, mut events) = (String::new(), 0);
    for line in BufReader::new(response.into_body().into_reader()).lines() {
        let line = line.context("reading the SSE stream")?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            return Ok((text, events));
        }
        let chunk: Value =
            serde_json::from_str(data).with_context(|| format!("an SSE event that is not JSON: {data}"))?;
        let piece = chunk["choices"][0]["text"].as_str().unwrap_or_default();
        if !piece.is_empty() {
            events += 1;
            text += piece;
        }
    }
    bail!("the SSE stream ended without data: [DONE]")
}

/// The same completion over `rill serve`'s WebSocket: the text and the number of token frames.
fn websocket_completion(url: &str) -> anyhow::Result<(String, usize)> {
    use tungstenite::Message;
    let ws_url = format!("{}/v1/ws", url.replacen("http://", "ws://", 1));
    let (mut socket, _) = tungstenite::connect(&ws_url).with_context(|| format!("connecting to {ws_url}"))?;
    let request = json!({ "type": "generate", "id": "compat", "prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0.0, "ignore_eos": true });
    socket.send(Message::text(request.to_string()))?;
    let (mut text, mut frames) = (String::new(), 0);
    loop {
        let Message::Text(frame) = socket.read().context("reading the WebSocket")? else {
            continue;
        };
        let frame: Value = serde_json::from_str(&frame)?;
        match frame["type"].as_str() {
            Some("token") => {
                frames += 1;
                text += frame["text"].as_str().unwrap_or_default();
            }
            Some("done") => break,
            _ => bail!("unexpected frame {frame}"),
        }
    }
    let _ = socket.close(None);
    Ok((text, frames))
}
