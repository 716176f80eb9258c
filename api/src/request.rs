//! Request bodies of `POST /v1/chat/completions` and `POST /v1/completions`, parsed and checked
//! into what the engine runs. Every problem is an [`ApiError`] naming the field at fault.

use crate::ApiError;
use rill_engine::chat::Message;
use rill_engine::settings::{GenerationSettings, SERVER_ONLY};
use rill_engine::{GenerateParams, MAX_TOP_LOGPROBS};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::LazyLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`: messages in, an assistant message out.
    Chat,
    /// `/v1/completions`: a prompt in, its continuation out.
    Completion,
}

/// What the engine is asked to continue.
#[derive(Clone, Debug, PartialEq)]
pub enum PromptSpec {
    Text(String),
    Tokens(Vec<u32>),
    Chat(Vec<Message>),
}

/// A checked request, ready for the engine.
#[derive(Clone, Debug)]
pub struct GenerationRequest {
    pub endpoint: Endpoint,
    /// The model the client named, if any (the server checks it against the loaded one).
    pub model: Option<String>,
    pub prompt: PromptSpec,
    pub params: GenerateParams,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
    /// Whether the response carries log-probabilities.
    pub logprobs: bool,
}

/// The fields both endpoints take (OpenAI's, then llama-server's extensions).
#[derive(Deserialize)]
struct Body {
    model: Option<String>,
    messages: Option<Vec<ChatMessage>>,
    prompt: Option<PromptField>,
    /// OpenAI's newer name for `max_tokens`; it wins when both are given.
    max_completion_tokens: Option<usize>,
    stop: Option<StopField>,
    n: Option<u32>,
    logprobs: Option<LogprobsField>,
    top_logprobs: Option<u32>,
    #[allow(dead_code)] // accepted and ignored, as OpenAI's end-user id
    user: Option<String>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    ignore_eos: Option<bool>,
    /// Everything else: the generation settings (read by [`settings`]), and fields that are
    /// ignored unless they ask for something this server does not do.
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    content: Option<Content>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PromptField {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StopField {
    One(String),
    Many(Vec<String>),
}

/// Chat takes a boolean; completions take how many alternatives to report (0..=5).
#[derive(Deserialize)]
#[serde(untagged)]
enum LogprobsField {
    Flag(bool),
    Count(u32),
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// Fields a client may send that change what it gets back, which this server does not do:
/// refusing them is better than answering something else.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("tools", "tool calls are not supported"),
    ("tool_choice", "tool calls are not supported"),
    ("functions", "function calls are not supported"),
    ("function_call", "function calls are not supported"),
    ("suffix", "suffix (insertion) is not supported"),
    ("audio", "audio output is not supported"),
    ("prediction", "predicted outputs are not supported"),
];

/// Parses a `/v1/chat/completions` body; `defaults` fill what the request leaves out.
pub fn parse_chat(body: &[u8], defaults: &GenerateParams) -> Result<GenerationRequest, ApiError> {
    parse(Endpoint::Chat, body, defaults)
}

/// Parses a `/v1/completions` body.
pub fn parse_completion(body: &[u8], defaults: &GenerateParams) -> Result<GenerationRequest, ApiError> {
    parse(Endpoint::Completion, body, defaults)
}

fn parse(endpoint: Endpoint, body: &[u8], defaults: &GenerateParams) -> Result<GenerationRequest, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|e| ApiError::invalid(format!("the body is not valid UTF-8: {e}"), None))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}"), None))?;
    if !value.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object", None));
    }
    let settings = settings(&value)?;
    let body: Body = deserialize(value)?;
    check_unsupported(&body)?;

    let prompt = match endpoint {
        Endpoint::Chat => {
            if body.prompt.is_some() {
                return Err(ApiError::invalid(
                    "chat completions take `messages`, not `prompt` (use /v1/completions)",
                    Some("prompt"),
                ));
            }
            PromptSpec::Chat(messages(
                body.messages
                    .ok_or_else(|| ApiError::invalid("`messages` is required", Some("messages")))?,
            )?)
        }
        Endpoint::Completion => {
            if body.messages.is_some() {
                return Err(ApiError::invalid(
                    "completions take `prompt`, not `messages` (use /v1/chat/completions)",
                    Some("messages"),
                ));
            }
            prompt(
                body.prompt
                    .ok_or_else(|| ApiError::invalid("`prompt` is required", Some("prompt")))?,
            )?
        }
    };

    if let Some(n) = body.n.filter(|&n| n != 1) {
        return Err(ApiError::invalid(
            format!("n = {n}: this server makes one choice per request"),
            Some("n"),
        ));
    }
    let (logprobs, top_logprobs) = match (endpoint, body.logprobs) {
        (_, None | Some(LogprobsField::Flag(false))) => (false, 0),
        (Endpoint::Chat, Some(LogprobsField::Flag(true))) => (true, body.top_logprobs.unwrap_or(0)),
        (Endpoint::Completion, Some(LogprobsField::Count(n))) => (true, n),
        (Endpoint::Chat, Some(LogprobsField::Count(_))) => {
            return Err(ApiError::invalid(
                "`logprobs` is a boolean in chat completions (use `top_logprobs` for alternatives)",
                Some("logprobs"),
            ))
        }
        (Endpoint::Completion, Some(LogprobsField::Flag(true))) => {
            return Err(ApiError::invalid(
                "`logprobs` is an integer in completions: how many alternatives to report",
                Some("logprobs"),
            ))
        }
    };
    if body.top_logprobs.is_some() && !logprobs {
        return Err(ApiError::invalid(
            "`top_logprobs` needs `logprobs: true`",
            Some("top_logprobs"),
        ));
    }
    if top_logprobs as usize > MAX_TOP_LOGPROBS {
        return Err(ApiError::invalid(
            format!("top_logprobs = {top_logprobs} is out of range: it must be 0..={MAX_TOP_LOGPROBS}"),
            Some("top_logprobs"),
        ));
    }

    let mut params = defaults.clone();
    settings.apply(&mut params);
    params
        .sampling
        .validate()
        .map_err(|e| ApiError::invalid(e.to_string(), Some(e.name)))?;
    let max_tokens = match (body.max_completion_tokens, settings.max_tokens) {
        (Some(m), _) => (m, "max_completion_tokens"),
        (None, Some(m)) => (m, "max_tokens"),
        (None, None) => (params.max_tokens, ""),
    };
    if max_tokens.0 == 0 {
        return Err(ApiError::invalid(
            format!("{} must be at least 1", max_tokens.1),
            Some(max_tokens.1),
        ));
    }
    let stop = match body.stop {
        None => defaults.stop.clone(),
        Some(StopField::One(s)) => vec![s],
        Some(StopField::Many(v)) => v,
    };
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop strings must not be empty", Some("stop")));
    }
    let params = GenerateParams {
        max_tokens: max_tokens.0,
        ignore_eos: body.ignore_eos.unwrap_or(defaults.ignore_eos),
        stop,
        logprobs,
        top_logprobs: top_logprobs as usize,
        ..params
    };
    let stream = body.stream.unwrap_or(false);
    let include_usage = body
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    if body.stream_options.is_some() && !stream {
        return Err(ApiError::invalid(
            "`stream_options` is only allowed with `stream: true`",
            Some("stream_options"),
        ));
    }
    Ok(GenerationRequest {
        endpoint,
        model: body.model,
        prompt,
        params,
        stream,
        include_usage,
        logprobs,
    })
}

/// `value` as `T`; an error names the field at fault.
fn deserialize<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::invalid(format!("`{path}`: {}", e.inner()), Some(&path))
    })
}

/// The generation settings a request sets: the fields of the body's object named as
/// [`GenerationSettings`] fields, except the server's own ([`SERVER_ONLY`], ignored as any
/// unknown field is).
fn settings(body: &Value) -> Result<GenerationSettings, ApiError> {
    static NAMES: LazyLock<Vec<String>> = LazyLock::new(|| {
        // The names of a complete set's serialised form: they cannot drift from the struct.
        match serde_json::to_value(GenerationSettings::of(&GenerateParams::default())) {
            Ok(Value::Object(fields)) => fields.into_iter().map(|(name, _)| name).collect(),
            _ => unreachable!("a complete GenerationSettings serialises to an object"),
        }
    });
    let fields = NAMES
        .iter()
        .filter(|name| !SERVER_ONLY.contains(&name.as_str()))
        .filter_map(|name| Some((name.clone(), body.get(name)?.clone())))
        .collect();
    deserialize(Value::Object(fields))
}

fn check_unsupported(body: &Body) -> Result<(), ApiError> {
    for (field, why) in UNSUPPORTED {
        match body.other.get(*field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) if m.is_empty() => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(Value::String(s)) if s.is_empty() || s == "none" => {}
            Some(_) => return Err(ApiError::invalid(format!("`{field}`: {why}"), Some(field))),
        }
    }
    match body
        .other
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => {}
        Some(other) => {
            return Err(ApiError::invalid(
                format!("response_format `{other}` is not supported (only `text`)"),
                Some("response_format"),
            ))
        }
    }
    if body.other.get("echo").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::invalid("`echo` is not supported", Some("echo")));
    }
    if body.other.get("best_of").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(ApiError::invalid("`best_of` > 1 is not supported", Some("best_of")));
    }
    Ok(())
}

fn messages(list: Vec<ChatMessage>) -> Result<Vec<Message>, ApiError> {
    if list.is_empty() {
        return Err(ApiError::invalid(
            "`messages` is empty: send at least one message",
            Some("messages"),
        ));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let param = format!("messages[{i}]");
            let role = match m.role.as_str() {
                "system" | "user" | "assistant" => m.role,
                // OpenAI's newer name for system instructions.
                "developer" => "system".to_string(),
                other => {
                    return Err(ApiError::invalid(
                        format!("{param}.role `{other}` is not supported (system, developer, user, assistant)"),
                        Some(&format!("{param}.role")),
                    ))
                }
            };
            let content = match m.content {
                None => String::new(),
                Some(Content::Text(t)) => t,
                Some(Content::Parts(parts)) => parts
                    .into_iter()
                    .map(|p| match (p.kind.as_str(), p.text) {
                        ("text", Some(t)) => Ok(t),
                        (kind, _) => Err(ApiError::invalid(
                            format!("{param}.content: `{kind}` parts are not supported (text only)"),
                            Some(&format!("{param}.content")),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join("\n"),
            };
            Ok(Message { role, content })
        })
        .collect()
}

fn prompt(field: PromptField) -> Result<PromptSpec, ApiError> {
    let one = |n: usize| {
        if n == 1 {
            Ok(())
        } else {
            Err(ApiError::invalid(
                format!("`prompt` holds {n} prompts: this server takes one per request"),
                Some("prompt"),
            ))
        }
    };
    let spec = match field {
        PromptField::Text(t) => PromptSpec::Text(t),
        PromptField::Texts(mut v) => {
            one(v.len())?;
            PromptSpec::Text(v.remove(0))
        }
        PromptField::Tokens(t) => PromptSpec::Tokens(t),
        PromptField::TokenLists(mut v) => {
            one(v.len())?;
            PromptSpec::Tokens(v.remove(0))
        }
    };
    match &spec {
        PromptSpec::Text(t) if t.is_empty() => Err(ApiError::invalid("`prompt` is empty", Some("prompt"))),
        PromptSpec::Tokens(t) if t.is_empty() => Err(ApiError::invalid("`prompt` has no tokens", Some("prompt"))),
        _ => Ok(spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_engine::sampler::LogitBias;

    fn chat(body: &str) -> Result<GenerationRequest, ApiError> {
        parse_chat(body.as_bytes(), &GenerateParams::default())
    }

    #[test]
    fn a_full_chat_request_maps_onto_engine_parameters() {
        let r = chat(r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]}],
            "max_completion_tokens":7,"temperature":0.5,"top_p":0.9,"seed":3,"stop":"\n","presence_penalty":0.1,"frequency_penalty":0.2,
            "n":1,"logprobs":true,"top_logprobs":2,"user":"u","stream":true,"stream_options":{"include_usage":true},
            "top_k":5,"min_p":0.05,"repeat_penalty":1.1,"ignore_eos":true,"store":false,"logit_bias":{"818":-100,"2":3.5}}"#)
        .unwrap();
        assert_eq!(
            r.prompt,
            PromptSpec::Chat(vec![Message::new("system", "Be brief."), Message::new("user", "Hi")])
        );
        let p = &r.params;
        assert_eq!(
            (p.max_tokens, p.stop.clone(), p.ignore_eos, p.top_logprobs),
            (7, vec!["\n".to_string()], true, 2)
        );
        assert_eq!(
            (
                p.sampling.temperature,
                p.sampling.top_k,
                p.sampling.seed,
                p.sampling.repeat_penalty
            ),
            (0.5, 5, 3, 1.1)
        );
        assert_eq!(p.sampling.logit_bias, LogitBias(vec![(2, 3.5), (818, -100.0)]));
        assert!(r.stream && r.include_usage && r.logprobs);
    }

    #[test]
    fn a_request_sets_the_shared_settings_but_not_the_servers_own() {
        let server = GenerateParams {
            context: 512,
            max_tokens: 9,
            ..GenerateParams::default()
        };
        let r = parse_chat(
            br#"{"messages":[{"role":"user","content":"x"}],"penalty_last_n":8,"temperature":null,
                "context":"whatever a client means by it","kv_type":7}"#,
            &server,
        )
        .unwrap();
        let p = &r.params;
        assert_eq!((p.sampling.penalty_last_n, p.context, p.max_tokens), (8, 512, 9));
        assert_eq!(p.sampling.temperature, server.sampling.temperature, "null is not given");
    }

    #[test]
    fn completions_take_a_string_or_token_prompt() {
        let d = GenerateParams::default();
        let r = parse_completion(br#"{"prompt":"Once","logprobs":3}"#, &d).unwrap();
        assert_eq!((r.prompt, r.params.top_logprobs), (PromptSpec::Text("Once".into()), 3));
        let r = parse_completion(br#"{"prompt":[[2,818]]}"#, &d).unwrap();
        assert_eq!(r.prompt, PromptSpec::Tokens(vec![2, 818]));
    }

    #[test]
    fn bad_requests_name_the_field_at_fault() {
        let param = |body: &str| chat(body).unwrap_err().param;
        assert_eq!(param(r#"{"messages":[]}"#).as_deref(), Some("messages"));
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#).as_deref(),
            Some("temperature")
        );
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":"x"}],"top_p":1.5}"#).as_deref(),
            Some("top_p")
        );
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}"#).as_deref(),
            Some("tools")
        );
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#).as_deref(),
            Some("n")
        );
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#).as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            param(r#"{"messages":[{"role":"tool","content":"x"}]}"#).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":"x"}],"top_logprobs":30,"logprobs":true}"#).as_deref(),
            Some("top_logprobs")
        );
        assert_eq!(param(r#"{"prompt":"x"}"#).as_deref(), Some("prompt"));
        assert_eq!(
            param(r#"{"messages":[{"role":"user","content":"x"}],"top_k":-1}"#).as_deref(),
            Some("top_k")
        );
        for bias in [r#"{"818":-101}"#, r#"{"818":"a lot"}"#, r#"{"token":1}"#, r#"[1]"#] {
            let body = format!(r#"{{"messages":[{{"role":"user","content":"x"}}],"logit_bias":{bias}}}"#);
            let param = param(&body).unwrap_or_default();
            assert!(param == "logit_bias" || param == "logit_bias.818", "{bias}: {param}");
        }
        let e = parse_chat(
            b"{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}",
            &GenerateParams::default(),
        )
        .unwrap_err();
        assert!(e.message.contains("UTF-8"), "{e}");
        assert!(chat("{").unwrap_err().message.contains("not valid JSON"));
        assert!(chat("[1]").unwrap_err().message.contains("JSON object"));
    }
}
