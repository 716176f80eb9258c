//! Response bodies: the non-streaming JSON object, the SSE chunks of a stream, and the
//! `timings` object Rill adds to both (as llama-server does; WebLLM puts the same figures in
//! `usage.extra`).

use crate::request::Endpoint;
use rill_engine::engine::Usage;
use rill_engine::TokenLogprob;
use serde::Serialize;
use serde_json::{json, Value};

/// One generated token as the client sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenOut {
    pub text: String,
    pub logprob: Option<TokenLogprob>,
    pub top_logprobs: Vec<TokenLogprob>,
}

/// Per-request telemetry, in milliseconds and tokens per second.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Waiting for the engine, before the prompt was read.
    pub queue_ms: f64,
    pub prompt_ms: f64,
    pub prompt_tokens_per_second: f64,
    /// From the request's arrival to the first token, queue included.
    pub time_to_first_token_ms: f64,
    pub decode_ms: f64,
    pub decode_tokens_per_second: f64,
    /// Gaps between consecutive tokens as they left the engine.
    pub inter_token_ms: Latency,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(samples: &[f64]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
        Latency {
            mean: s.iter().sum::<f64>() / s.len() as f64,
            p50: at(0.5),
            p95: at(0.95),
            max: s[s.len() - 1],
        }
    }
}

/// Tokens per second, 0 when nothing was timed.
pub fn rate(tokens: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        tokens as f64 * 1e3 / ms
    } else {
        0.0
    }
}

/// How a generation ended, in OpenAI's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
}

impl Finish {
    /// How the engine says it ended (`None`: cancelled, reported as a stop).
    pub fn of(reason: Option<rill_engine::engine::FinishReason>) -> Finish {
        match reason {
            Some(rill_engine::engine::FinishReason::Length) => Finish::Length,
            _ => Finish::Stop,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// One token's log-probability as OpenAI writes it: its text (lossy where the token holds part
/// of a UTF-8 character), the value, and the exact bytes.
pub fn logprob_json(t: &TokenLogprob) -> Value {
    json!({ "token": String::from_utf8_lossy(&t.bytes), "logprob": t.logprob, "bytes": t.bytes })
}

/// OpenAI's usage object; prompt tokens served from the prefix cache are its
/// `prompt_tokens_details.cached_tokens`.
pub fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": { "cached_tokens": u.cached_tokens },
    })
}

/// `data: {json}` and a blank line: one server-sent event.
pub fn sse_event(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// The event that ends an OpenAI stream.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

/// Writes the bodies of one response: same id, creation time and model in every chunk.
pub struct ResponseWriter {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
}

impl ResponseWriter {
    /// `id_seed` makes the response id (e.g. a request counter); `created` is Unix seconds.
    pub fn new(endpoint: Endpoint, id_seed: u64, created: u64, model: &str, logprobs: bool) -> ResponseWriter {
        let prefix = match endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completion => "cmpl",
        };
        ResponseWriter {
            endpoint,
            id: format!("{prefix}-rill-{created:x}-{id_seed}"),
            created,
            model: model.to_string(),
            logprobs,
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completion, _) => "text_completion",
        }
    }

    fn envelope(&self, chunk: bool, choices: Value) -> Value {
        json!({ "id": self.id, "object": self.object(chunk), "created": self.created, "model": self.model, "system_fingerprint": concat!("rill-", env!("CARGO_PKG_VERSION")), "choices": choices })
    }

    /// The `logprobs` of a choice for these tokens (null unless asked for).
    fn logprobs(&self, tokens: &[TokenOut]) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        match self.endpoint {
            Endpoint::Chat => json!({ "content": tokens.iter().filter_map(|t| t.logprob.as_ref().map(|lp| {
                let mut e = logprob_json(lp);
                e["top_logprobs"] = t.top_logprobs.iter().map(logprob_json).collect();
                e
            })).collect::<Vec<_>>() }),
            // The legacy completions format: parallel arrays and one map per token.
            Endpoint::Completion => {
                let chosen: Vec<&TokenLogprob> = tokens.iter().filter_map(|t| t.logprob.as_ref()).collect();
                json!({
                    "tokens": chosen.iter().map(|t| String::from_utf8_lossy(&t.bytes)).collect::<Vec<_>>(),
                    "token_logprobs": chosen.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                    "top_logprobs": tokens.iter().filter(|t| t.logprob.is_some()).map(|t| t.top_logprobs.iter().map(|a| (String::from_utf8_lossy(&a.bytes).into_owned(), json!(a.logprob))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
                })
            }
        }
    }

    /// A stream chunk carrying `tokens` (one or several, when the client reads slower than they
    /// come). `first` adds the assistant role to a chat delta.
    pub fn chunk(&self, tokens: &[TokenOut], first: bool) -> Value {
        let text: String = tokens.iter().map(|t| t.text.as_str()).collect();
        let choice = match self.endpoint {
            Endpoint::Chat => {
                let delta = if first {
                    json!({ "role": "assistant", "content": text })
                } else {
                    json!({ "content": text })
                };
                json!({ "index": 0, "delta": delta, "logprobs": self.logprobs(tokens), "finish_reason": null })
            }
            Endpoint::Completion => {
                json!({ "index": 0, "text": text, "logprobs": self.logprobs(tokens), "finish_reason": null })
            }
        };
        self.envelope(true, json!([choice]))
    }

    /// The stream's last content chunk: the finish reason, and the request's timings.
    pub fn finish_chunk(&self, finish: Finish, timings: &Timings) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({ "index": 0, "delta": {}, "logprobs": null, "finish_reason": finish.name() }),
            Endpoint::Completion => json!({ "index": 0, "text": "", "logprobs": null, "finish_reason": finish.name() }),
        };
        let mut v = self.envelope(true, json!([choice]));
        v["timings"] = json!(timings);
        v
    }

    /// `stream_options.include_usage`: the chunk after the last, with no choices.
    pub fn usage_chunk(&self, usage: Usage, timings: &Timings) -> Value {
        let mut v = self.envelope(true, json!([]));
        v["usage"] = usage_json(usage);
        v["timings"] = json!(timings);
        v
    }

    /// The events that end a stream: the finish chunk, the usage chunk when asked for, and
    /// `[DONE]`.
    pub fn stream_end(&self, finish: Finish, usage: Usage, timings: &Timings, include_usage: bool) -> String {
        let mut text = sse_event(&self.finish_chunk(finish, timings));
        if include_usage {
            text += &sse_event(&self.usage_chunk(usage, timings));
        }
        text + SSE_DONE
    }

    /// The whole non-streaming response.
    pub fn complete(&self, tokens: &[TokenOut], finish: Finish, usage: Usage, timings: &Timings) -> Value {
        let text: String = tokens.iter().map(|t| t.text.as_str()).collect();
        let choice = match self.endpoint {
            Endpoint::Chat => {
                json!({ "index": 0, "message": { "role": "assistant", "content": text }, "logprobs": self.logprobs(tokens), "finish_reason": finish.name() })
            }
            Endpoint::Completion => {
                json!({ "index": 0, "text": text, "logprobs": self.logprobs(tokens), "finish_reason": finish.name() })
            }
        };
        let mut v = self.envelope(false, json!([choice]));
        v["usage"] = usage_json(usage);
        v["timings"] = json!(timings);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str, lp: f32) -> TokenOut {
        let t = |b: &str, l| TokenLogprob {
            id: 1,
            bytes: b.as_bytes().to_vec(),
            logprob: l,
        };
        TokenOut {
            text: text.into(),
            logprob: Some(t(text, lp)),
            top_logprobs: vec![t(text, lp), t("x", lp - 1.0)],
        }
    }

    #[test]
    fn chat_chunks_carry_the_role_once_and_coalesce_tokens() {
        let w = ResponseWriter::new(Endpoint::Chat, 7, 1_700_000_000, "gemma", true);
        let first = w.chunk(&[token("He", -0.5), token("llo", -0.25)], true);
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(
            first["choices"][0]["delta"],
            json!({ "role": "assistant", "content": "Hello" })
        );
        assert_eq!(first["choices"][0]["logprobs"]["content"][1]["token"], "llo");
        assert_eq!(
            first["choices"][0]["logprobs"]["content"][1]["top_logprobs"][1]["logprob"],
            -1.25
        );
        assert_eq!(
            w.chunk(&[token("!", -1.0)], false)["choices"][0]["delta"],
            json!({ "content": "!" })
        );
        let usage = w.usage_chunk(
            Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                ..Usage::default()
            },
            &Timings::default(),
        );
        assert_eq!(
            (usage["choices"].clone(), usage["usage"]["total_tokens"].clone()),
            (json!([]), json!(5))
        );
    }

    #[test]
    fn a_completion_response_has_text_usage_and_timings() {
        let w = ResponseWriter::new(Endpoint::Completion, 1, 0, "gemma", false);
        let v = w.complete(
            &[token("a", 0.0), token("b", 0.0)],
            Finish::Length,
            Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                ..Usage::default()
            },
            &Timings::default(),
        );
        assert_eq!(
            (v["object"].as_str(), v["choices"][0]["text"].as_str()),
            (Some("text_completion"), Some("ab"))
        );
        assert_eq!(
            (
                v["choices"][0]["finish_reason"].as_str(),
                v["choices"][0]["logprobs"].clone()
            ),
            (Some("length"), Value::Null)
        );
        assert!(v["timings"]["inter_token_ms"]["p95"].is_number());
    }

    #[test]
    fn latency_percentiles() {
        let l = Latency::of(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((l.mean, l.p50, l.max), (3.0, 3.0, 5.0));
        assert_eq!(Latency::of(&[]), Latency::default());
    }
}
