//! llama.cpp's `llama-server` as the peer of `rill bench --concurrency`: started on the same
//! model with one slot per stream, sent the same prompt (token ids) for the same number of
//! tokens, streamed over SSE, and measured the same way (token arrival times per stream).

use crate::bench_batch::Level;
use crate::child_server::{free_port, ChildServer};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct PeerServer(ChildServer);

impl PeerServer {
    /// Starts `llama_server` on `model` with `threads` threads and `slots` slots of `context`
    /// positions each, and waits until it answers `/health`.
    pub fn start(
        llama_server: &Path,
        model: &Path,
        threads: usize,
        slots: usize,
        context: usize,
    ) -> anyhow::Result<PeerServer> {
        let port = free_port()?;
        let mut cmd = Command::new(llama_server);
        cmd.arg("-m").arg(model);
        let n = |v: usize| v.to_string();
        cmd.args([
            "-t",
            &n(threads),
            "-tb",
            &n(threads),
            "-np",
            &n(slots),
            "-c",
            &n(slots * context),
            "--port",
            &port.to_string(),
            "--host",
            "127.0.0.1",
        ]);
        crate::child_server::with_library_path(&mut cmd, llama_server)?;
        eprintln!(
            "rill: starting {} ({slots} slots, {threads} thread(s)) …",
            llama_server.display()
        );
        let name = llama_server.display().to_string();
        Ok(PeerServer(ChildServer::start(
            cmd,
            &name,
            port,
            "/health",
            Duration::from_secs(120),
        )?))
    }

    /// `streams` greedy completions of `gen_tokens` tokens from `prompt` at once.
    pub fn level(&self, streams: usize, prompt: &[u32], gen_tokens: usize) -> anyhow::Result<Level> {
        let body = json!({ "prompt": prompt, "n_predict": gen_tokens, "temperature": 0.0, "ignore_eos": true, "stream": true });
        let url = format!("{}/completion", self.0.url);
        let arrivals = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..streams)
                .map(|_| scope.spawn(|| stream_arrivals(&url, &body)))
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("a stream thread panicked"))
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        if let Some(short) = arrivals.iter().find(|a| a.len() != gen_tokens) {
            bail!(
                "llama-server streamed {} tokens where {gen_tokens} were asked for",
                short.len()
            );
        }
        Level::from_arrivals(&arrivals)
    }
}

/// Posts `body` and notes when each token's SSE event arrives (llama-server sends one per
/// token, then a last one with `"stop": true`).
fn stream_arrivals(url: &str, body: &Value) -> anyhow::Result<Vec<Instant>> {
    let response = ureq::post(url).send_json(body).with_context(|| format!("POST {url}"))?;
    let mut arrivals = Vec::new();
    for line in BufReader::new(response.into_body().into_reader()).lines() {
        let line = line?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let event: Value = serde_json::from_str(data).with_context(|| format!("an SSE event: {data}"))?;
        if event["stop"] == true {
            break;
        }
        arrivals.push(Instant::now());
    }
    Ok(arrivals)
}
