//! `wasi:http/incoming-handler`: routes a request to the API and answers it, streaming tokens
//! as the engine makes them.

use crate::body::{read_body, Responder};
use crate::model::{self, LoadedModel};
use rill_api::{
    sse_event, ApiError, Endpoint, Finish, GenerationRequest, PromptSpec, ResponseWriter, TokenClock, TokenOut,
};
use rill_engine::{EngineError, Generation, Prompt, TokenEvent};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};

struct Worker;
wasip2::http::proxy::export!(Worker);

/// Largest request body read (`rill serve`'s default).
const BODY_LIMIT: usize = 1 << 20;

/// Responses of this instance so far (part of each response's id).
static RESPONSES: AtomicU64 = AtomicU64::new(0);

impl wasip2::exports::http::incoming_handler::Guest for Worker {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let arrived = Instant::now();
        let respond = Responder(out);
        let target = request.path_with_query().unwrap_or_default();
        let path = target.split('?').next().unwrap_or_default();
        match (request.method(), path) {
            (Method::Get, "/health") => respond.json(200, &rill_api::health()),
            (Method::Get, "/v1/models") => match model::get() {
                Ok(m) => respond.json(200, &m.served.list()),
                Err(e) => respond.error(&e),
            },
            (Method::Get, p) if p.starts_with("/v1/models/") => match model::get() {
                Ok(m) if p["/v1/models/".len()..] == m.served.id => respond.json(200, &m.served.object()),
                Ok(_) => respond.error(&ApiError::model_not_found(&p["/v1/models/".len()..])),
                Err(e) => respond.error(&e),
            },
            (Method::Post, "/v1/chat/completions") => generate(Endpoint::Chat, &request, respond, arrived),
            (Method::Post, "/v1/completions") => generate(Endpoint::Completion, &request, respond, arrived),
            _ => respond.error(&ApiError::not_found(path)),
        }
    }
}

/// A generation request: refused with a 4xx/5xx body, or answered as one JSON object or an SSE
/// stream. The status follows from how the generation starts (a prompt the engine refuses is a
/// 4xx, not a 200 stream that ends in an error), so the first token comes before the headers.
fn generate(endpoint: Endpoint, request: &IncomingRequest, respond: Responder, arrived: Instant) {
    let started = (|| {
        let body = read_body(request, BODY_LIMIT)?;
        let model = model::get()?;
        let request = model.served.parse(endpoint, &body)?;
        let mut clock = TokenClock::started(arrived);
        let mut generation = start(model, &request).map_err(|e| ApiError::from(&e))?;
        let first = generation.next().map_err(|e| ApiError::from(&e))?;
        if first.is_some() {
            clock.token(Instant::now());
        }
        Ok((model, request, generation, clock, first))
    })();
    let (model, request, mut generation, mut clock, first) = match started {
        Ok(s) => s,
        Err(e) => return respond.error(&e),
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let writer = ResponseWriter::new(
        endpoint,
        RESPONSES.fetch_add(1, Ordering::Relaxed),
        created,
        &model.served.id,
        request.logprobs,
    );
    if !request.stream {
        let mut tokens: Vec<TokenOut> = first.into_iter().map(token_out).collect();
        loop {
            match generation.next() {
                Ok(Some(event)) => {
                    clock.token(Instant::now());
                    tokens.push(token_out(event));
                }
                Ok(None) => break,
                Err(e) => return respond.error(&ApiError::from(&e)),
            }
        }
        let timings = clock.timings(generation.usage(), &generation.timings());
        return respond.json(
            200,
            &writer.complete(
                &tokens,
                Finish::of(generation.finish_reason()),
                generation.usage(),
                &timings,
            ),
        );
    }
    let mut body = respond.start(
        200,
        &[
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
            ("x-accel-buffering", "no"),
        ],
    );
    let mut next: Result<Option<TokenEvent>, EngineError> = Ok(first);
    let mut first_chunk = true;
    loop {
        let text = match next {
            Ok(Some(event)) => {
                let chunk = writer.chunk(&[token_out(event)], first_chunk);
                first_chunk = false;
                sse_event(&chunk)
            }
            Ok(None) => {
                let timings = clock.timings(generation.usage(), &generation.timings());
                body.write(
                    writer
                        .stream_end(
                            Finish::of(generation.finish_reason()),
                            generation.usage(),
                            &timings,
                            request.include_usage,
                        )
                        .as_bytes(),
                );
                break;
            }
            // As `rill serve` (and OpenAI) end a stream that fails midway: an error event.
            Err(e) => {
                body.write(sse_event(&ApiError::from(&e).body()).as_bytes());
                break;
            }
        };
        if !body.write(text.as_bytes()) {
            break; // the client has gone: stop generating for it
        }
        next = generation.next();
        if let Ok(Some(_)) = next {
            clock.token(Instant::now());
        }
    }
    body.finish();
}

fn start(model: &LoadedModel, request: &GenerationRequest) -> Result<Generation, EngineError> {
    let engine = &model.engine;
    let tokens = match &request.prompt {
        PromptSpec::Text(t) => engine.prompt_tokens(&Prompt::Text(t))?,
        PromptSpec::Chat(messages) => engine.prompt_tokens(&Prompt::Chat(messages))?,
        PromptSpec::Tokens(t) => t.clone(),
    };
    engine.generate(tokens, request.params.clone())
}

fn token_out(event: TokenEvent) -> TokenOut {
    TokenOut {
        text: event.text,
        logprob: event.logprob,
        top_logprobs: event.top_logprobs,
    }
}
