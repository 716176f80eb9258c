//! The engine: a loaded model with its tokenizer and chat template, and generations that
//! stream token events from it.

use crate::chat::{ChatError, ChatTemplate, Message};
use crate::gguf::{Gguf, GgufError};
use crate::gpu::{GpuApi, GpuError};
use crate::model::{
    ForwardError, KvCache, KvType, LoadOptions, Logits, Model, ModelError, SeqInput, SeqLogits, BLOCK, TOP_K,
};
use crate::prefix_cache::PrefixCache;
use crate::sampler::{logprob, top_logprobs, Sampler, SamplingParams};
use crate::stop::StopMatcher;
use crate::tokenizer::{StreamDecoder, TokenId, Tokenizer, TokenizerError};
use rill_kernels::KernelPath;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What can go wrong, in the categories the WIT contract reports.
#[derive(Clone, Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid model: {0}")]
    InvalidModel(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("context overflow: {0}")]
    ContextOverflow(String),
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    #[error("GPU failed: {0}")]
    DeviceLost(String),
}

impl From<GpuError> for EngineError {
    fn from(e: GpuError) -> Self {
        match e {
            GpuError::OutOfMemory(_) => EngineError::OutOfMemory(e.to_string()),
            e => EngineError::DeviceLost(e.to_string()),
        }
    }
}

impl From<GgufError> for EngineError {
    fn from(e: GgufError) -> Self {
        match e {
            GgufError::OutOfMemory { .. } => EngineError::OutOfMemory(e.to_string()),
            e => EngineError::InvalidModel(e.to_string()),
        }
    }
}

impl From<ModelError> for EngineError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Config(crate::model::ConfigError::Unsupported(_)) => EngineError::Unsupported(e.to_string()),
            e => EngineError::InvalidModel(e.to_string()),
        }
    }
}

impl From<TokenizerError> for EngineError {
    fn from(e: TokenizerError) -> Self {
        match e {
            TokenizerError::Unsupported(_) => EngineError::Unsupported(e.to_string()),
            TokenizerError::UnknownId(..) => EngineError::InvalidArgument(e.to_string()),
            TokenizerError::Metadata(_) => EngineError::InvalidModel(e.to_string()),
        }
    }
}

impl From<ForwardError> for EngineError {
    fn from(e: ForwardError) -> Self {
        match e {
            ForwardError::ContextOverflow { .. } => EngineError::ContextOverflow(e.to_string()),
            ForwardError::OutOfMemory(_) => EngineError::OutOfMemory(e.to_string()),
            ForwardError::Gpu(e) => e.into(),
            _ => EngineError::InvalidArgument(e.to_string()),
        }
    }
}

impl From<ChatError> for EngineError {
    fn from(e: ChatError) -> Self {
        EngineError::InvalidArgument(e.to_string())
    }
}

pub struct Engine {
    pub gguf: Gguf,
    pub tokenizer: Tokenizer,
    pub model: Model,
    chat: Result<ChatTemplate, ChatError>,
    /// KV blocks of earlier sequences, for later ones that start the same way.
    prefix_cache: Mutex<PrefixCache>,
}

/// What to generate from.
pub enum Prompt<'a> {
    /// Plain text: BOS is added when the model wants it; control tokens stay text.
    Text(&'a str),
    /// Messages rendered with the chat template, ready for the assistant's reply.
    Chat(&'a [Message]),
}

#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    /// Keep going past end-of-sequence / end-of-turn tokens.
    pub ignore_eos: bool,
    pub stop: Vec<String>,
    /// KV cache positions (prompt plus output); capped at the model's context length.
    pub context: usize,
    /// What happens when the context is full.
    pub on_full_context: ContextPolicy,
    /// How the KV cache stores keys and values.
    pub kv_type: KvType,
    /// Report each token's log-probability.
    pub logprobs: bool,
    /// Also report this many most likely alternatives per token (at most [`MAX_TOP_LOGPROBS`]).
    pub top_logprobs: usize,
}

/// What a generation does when its context is full. Written `finish`, `error` or `shift:N`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ContextPolicy {
    /// Finish with `Length`.
    #[default]
    Finish,
    /// Fail with `ContextOverflow`.
    Error,
    /// Keep the first `keep` tokens (at most half the context), drop the older half of the
    /// rest, read what is left again at its new positions and go on.
    Shift { keep: usize },
}

impl std::str::FromStr for ContextPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "finish" => Ok(ContextPolicy::Finish),
            "error" => Ok(ContextPolicy::Error),
            _ => match s.strip_prefix("shift:").map(str::parse) {
                Some(Ok(keep)) => Ok(ContextPolicy::Shift { keep }),
                _ => Err(format!(
                    "{s:?} is not a full-context policy: finish, error or shift:N (N tokens kept at the start)"
                )),
            },
        }
    }
}

impl TryFrom<String> for ContextPolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ContextPolicy> for String {
    fn from(p: ContextPolicy) -> String {
        match p {
            ContextPolicy::Finish => "finish".into(),
            ContextPolicy::Error => "error".into(),
            ContextPolicy::Shift { keep } => format!("shift:{keep}"),
        }
    }
}

/// The most alternatives a token event reports (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            sampling: SamplingParams::default(),
            max_tokens: 256,
            ignore_eos: false,
            stop: Vec::new(),
            context: 4096,
            on_full_context: ContextPolicy::Finish,
            kv_type: KvType::F16,
            logprobs: false,
            top_logprobs: 0,
        }
    }
}

impl Engine {
    /// Loads a whole GGUF file from memory.
    pub fn load(file: Vec<u8>, path: KernelPath, options: &LoadOptions) -> Result<Engine, EngineError> {
        let gguf = Gguf::parse(&file)?;
        Self::from_parts(gguf, Arc::new(file), path, options)
    }

    /// Builds the engine over an already parsed file.
    pub fn from_parts(
        gguf: Gguf,
        file: Arc<Vec<u8>>,
        path: KernelPath,
        options: &LoadOptions,
    ) -> Result<Engine, EngineError> {
        // The model first: an unsupported architecture is the error to report, whatever else is off.
        let model = Model::new(&gguf, file, path, options)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        if model.config.vocab_size != tokenizer.vocab_size() {
            return Err(EngineError::InvalidModel(format!(
                "{} tokens but {} embedding rows",
                tokenizer.vocab_size(),
                model.config.vocab_size
            )));
        }
        let text = |id: Option<TokenId>| {
            id.map(|t| String::from_utf8_lossy(&tokenizer.token_bytes(t, true).unwrap_or_default()).into_owned())
                .unwrap_or_default()
        };
        let chat = ChatTemplate::from_gguf(&gguf, text(tokenizer.bos), text(tokenizer.eos));
        Ok(Engine {
            gguf,
            tokenizer,
            model,
            chat,
            prefix_cache: Mutex::default(),
        })
    }

    /// Moves the model onto `api`'s GPU (before any generation starts); `progress` is told the
    /// bytes of weights uploaded so far.
    pub fn use_gpu(&mut self, api: Arc<dyn GpuApi>, progress: &mut dyn FnMut(u64)) -> Result<(), EngineError> {
        Ok(self.model.use_gpu(api, progress)?)
    }

    /// KV memory: (bytes held by all caches, the budget, bytes the prefix cache holds).
    pub fn kv_memory(&self) -> (usize, usize, usize) {
        let m = &self.model.kv_memory;
        (m.used(), m.budget(), self.prefix_cache().bytes())
    }

    /// The prefix cache (a panic while it was held leaves nothing half-done in it).
    pub fn prefix_cache(&self) -> MutexGuard<'_, PrefixCache> {
        self.prefix_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn chat_template(&self) -> Result<&ChatTemplate, EngineError> {
        self.chat.as_ref().map_err(|e| EngineError::Unsupported(e.to_string()))
    }

    /// The prompt's token ids.
    pub fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<TokenId>, EngineError> {
        Ok(match prompt {
            Prompt::Text(t) => self.tokenizer.encode(t, true, false),
            Prompt::Chat(messages) => {
                let text = self.chat_template()?.render(messages, true)?;
                // Templates usually write the BOS token themselves.
                let bos_written = self
                    .tokenizer
                    .bos
                    .is_some_and(|b| self.tokenizer.encode(&text, false, true).first() == Some(&b));
                self.tokenizer.encode(&text, !bos_written, true)
            }
        })
    }

    /// What the model is and what it holds in memory.
    pub fn info(&self) -> ModelInfo {
        let c = &self.model.config;
        let mut quant_types: Vec<String> = self.gguf.tensors.iter().map(|t| t.ty.name().to_string()).collect();
        quant_types.sort();
        quant_types.dedup();
        ModelInfo {
            architecture: self.gguf.architecture().unwrap_or_default().to_string(),
            name: self.gguf.str("general.name").unwrap_or_default().to_string(),
            parameters: self.gguf.tensors.iter().map(|t| t.n_elements).sum(),
            context_length: c.context_length,
            vocab_size: c.vocab_size,
            quant_types,
            memory_bytes: self.gguf.tensors.iter().map(|t| t.n_bytes).sum(),
            kv_bytes_per_token: c.kv_bytes_per_token() as u64,
        }
    }

    /// Teacher-forced evaluation: for each of `tokens` (used as given), the `top` highest
    /// logits for the token after it, highest first.
    pub fn top_logits(&self, tokens: &[TokenId], top: usize) -> Result<Vec<Vec<(TokenId, f32)>>, EngineError> {
        let mut cache = self
            .model
            .new_cache(KvType::F16, tokens.len())
            .expect("every model has an f16 cache");
        let all = self.model.forward(tokens, &mut cache, Logits::All)?;
        let vocab = self.model.config.vocab_size;
        let k = top.clamp(1, vocab);
        Ok(all
            .chunks_exact(vocab)
            .map(|row| {
                let mut idx: Vec<usize> = (0..vocab).collect();
                idx.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
                idx.truncate(k);
                idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                idx.into_iter().map(|i| (i as TokenId, row[i])).collect()
            })
            .collect())
    }

    /// Starts a generation; it keeps the engine alive for as long as it runs.
    pub fn generate(self: &Arc<Self>, prompt: Vec<TokenId>, params: GenerateParams) -> Result<Generation, EngineError> {
        params
            .sampling
            .validate()
            .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        let vocab_size = self.model.config.vocab_size;
        if let Some(id) = params.sampling.logit_bias.unknown_token(vocab_size) {
            return Err(EngineError::InvalidArgument(format!(
                "logit_bias: token id {id} is outside the vocabulary of {vocab_size} tokens"
            )));
        }
        if params.top_logprobs > MAX_TOP_LOGPROBS {
            return Err(EngineError::InvalidArgument(format!(
                "top_logprobs = {} is out of range: it must be 0..={MAX_TOP_LOGPROBS}",
                params.top_logprobs
            )));
        }
        if prompt.is_empty() {
            return Err(EngineError::InvalidArgument("the prompt has no tokens".into()));
        }
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= self.tokenizer.vocab_size()) {
            return Err(EngineError::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.tokenizer.vocab_size()
            )));
        }
        let capacity = params.context.min(self.model.config.context_length);
        if prompt.len() >= capacity {
            return Err(EngineError::ContextOverflow(format!(
                "the prompt has {} tokens; the context holds {capacity}",
                prompt.len()
            )));
        }
        let layout = self.model.kv_layout(params.kv_type).ok_or_else(|| {
            EngineError::Unsupported(match self.model.gpu() {
                Some(_) => format!(
                    "a {:?} KV cache on the GPU for heads of {} values (Q8_0 there needs a multiple of 64)",
                    params.kv_type, self.model.config.head_dim
                ),
                None => format!(
                    "a {:?} KV cache for rows of {} values",
                    params.kv_type,
                    self.model.config.kv_dim()
                ),
            })
        })?;
        // Whole blocks of the prompt that an earlier sequence computed; the last prompt token is
        // always run, for its logits.
        let reused = self.prefix_cache().lookup(&layout, &prompt, (prompt.len() - 1) / BLOCK);
        let cached = reused.len() * BLOCK;
        let cache = KvCache::with_prefix(layout, capacity, reused);
        let mut sampler = Sampler::new(params.sampling.clone());
        prompt.iter().for_each(|&t| sampler.accept(t));
        Ok(Generation {
            engine: self.clone(),
            cache,
            history: prompt[..cached].to_vec(),
            published: cached / BLOCK,
            sampler,
            decoder: StreamDecoder::new(),
            stop: StopMatcher::new(params.stop.clone()),
            params,
            pending: Pending::Prompt {
                tokens: prompt,
                read: cached,
                resumed: false,
            },
            finish: None,
            usage: Usage {
                cached_tokens: cached,
                ..Usage::default()
            },
            timings: Timings::default(),
            started: Instant::now(),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub architecture: String,
    pub name: String,
    pub parameters: u64,
    pub context_length: usize,
    pub vocab_size: usize,
    pub quant_types: Vec<String>,
    pub memory_bytes: u64,
    pub kv_bytes_per_token: u64,
}

/// One generated token and the text it completes (empty while a character or a possible
/// stop string is incomplete).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenEvent {
    pub id: TokenId,
    pub text: String,
    /// With `logprobs`: the token's log-probability.
    pub logprob: Option<TokenLogprob>,
    /// With `top_logprobs`: the most likely tokens at this step, most likely first.
    pub top_logprobs: Vec<TokenLogprob>,
}

/// A token's log-probability, with its bytes (one token may hold part of a UTF-8 character).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub id: TokenId,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose keys and values came from the prefix cache.
    pub cached_tokens: usize,
    /// Times the generation's KV cache was dropped for memory (and recomputed).
    pub preemptions: usize,
    /// Times the context filled and was shifted.
    pub context_shifts: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    pub prompt: Duration,
    pub decode: Duration,
    /// From `generate` to the first token.
    pub time_to_first_token: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// End-of-sequence/turn token or a stop string.
    Stop,
    /// `max_tokens` reached, or the context is full.
    Length,
    Cancelled,
}

/// Gives every runner of a step (`runners`: index in `batch`, prompt tokens it reads) the KV
/// blocks the step fills, before any work. When memory is short, the prefix cache is emptied
/// first; then generations started later are preempted, the latest first, so that older
/// ones can go on. A runner that still finds no memory waits for a later step; it fails with
/// `OutOfMemory` only when nothing else holds any.
fn reserve_memory(
    batch: &mut [&mut Generation],
    runners: &mut Vec<(usize, std::ops::Range<usize>)>,
    results: &mut [Option<Result<Step, EngineError>>],
    engine: &Engine,
) {
    let mut k = 0;
    while k < runners.len() {
        let (i, range) = runners[k].clone();
        let end = batch[i].cache.len() + range.len().max(1); // a decoding runner adds one position
        let Err(e) = batch[i].cache.reserve(end) else {
            k += 1;
            continue;
        };
        if engine.prefix_cache().clear() {
            continue;
        }
        let younger =
            (0..batch.len()).filter(|&j| batch[j].started > batch[i].started && batch[j].cache.holds_blocks());
        if let Some(j) = younger.max_by_key(|&j| batch[j].started) {
            batch[j].preempt();
            if let Some(at) = runners.iter().position(|&(r, _)| r == j) {
                runners.remove(at);
                results[j] = Some(Ok(Step::Reading));
                if at < k {
                    k -= 1; // the runners after it moved down one
                }
            }
            continue;
        }
        runners.remove(k);
        let alone = batch.iter().enumerate().all(|(j, g)| j == i || !g.cache.holds_blocks());
        results[i] = Some(if alone {
            Err(EngineError::OutOfMemory(e.to_string()))
        } else {
            Ok(Step::Reading)
        });
    }
}

/// A step's log-probabilities, when asked for.
#[derive(Default)]
struct Logprobs {
    chosen: Option<TokenLogprob>,
    top: Vec<TokenLogprob>,
}

enum Pending {
    /// The prompt; the tokens before `read` are in the cache already. `resumed`: these are the
    /// tokens of a generation past its prompt whose KV was dropped (preempted for memory, or
    /// its context shifted), read again before it continues.
    Prompt {
        tokens: Vec<TokenId>,
        read: usize,
        resumed: bool,
    },
    /// The last sampled token, not yet evaluated.
    Token(TokenId),
}

/// What one step did for a generation.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// A token was generated.
    Token(TokenEvent),
    /// Part of the prompt was read; no token yet.
    Reading,
    /// It has finished (now or before).
    Finished,
}

/// A running generation: call [`Generation::next`] until it returns `None`.
pub struct Generation {
    engine: Arc<Engine>,
    cache: KvCache,
    /// The tokens in the cache, in order.
    history: Vec<TokenId>,
    /// Full blocks of the cache handed to the prefix cache.
    published: usize,
    sampler: Sampler,
    decoder: StreamDecoder,
    stop: StopMatcher,
    params: GenerateParams,
    pending: Pending,
    finish: Option<FinishReason>,
    usage: Usage,
    timings: Timings,
    started: Instant,
}

impl Generation {
    /// The next token event, or `None` when the generation has finished.
    #[expect(
        clippy::should_implement_trait,
        reason = "a fallible pull (a Result of an Option), which Iterator cannot express"
    )]
    pub fn next(&mut self) -> Result<Option<TokenEvent>, EngineError> {
        loop {
            match Generation::step(&mut [&mut *self], usize::MAX)
                .pop()
                .expect("one result per generation")?
            {
                Step::Token(event) => return Ok(Some(event)),
                Step::Reading => continue,
                Step::Finished => return Ok(None),
            }
        }
    }

    /// Advances every generation of `batch` (all of one engine) by one step in one batched
    /// forward pass: a token each for those decoding, and up to `prompt_budget` prompt tokens in
    /// all for those still reading their prompts (chunked, so a long prompt does not stall the
    /// others for long; the first prompt always gets at least one token).
    pub fn step(batch: &mut [&mut Generation], prompt_budget: usize) -> Vec<Result<Step, EngineError>> {
        let mut results: Vec<Option<Result<Step, EngineError>>> = (0..batch.len()).map(|_| None).collect();
        // Those that end without running: finished, at their length limit, or with a full context.
        for (g, result) in batch.iter_mut().zip(results.iter_mut()) {
            if g.finish.is_some() {
                *result = Some(Ok(Step::Finished));
            } else if g.usage.completion_tokens >= g.params.max_tokens {
                *result = Some(Ok(g
                    .end(FinishReason::Length, None)
                    .map_or(Step::Finished, Step::Token)));
            } else if g.cache.len() >= g.cache.capacity() {
                match g.params.on_full_context {
                    ContextPolicy::Shift { keep } => g.shift_context(keep),
                    ContextPolicy::Error => {
                        g.set_finished(FinishReason::Length);
                        *result = Some(Err(EngineError::ContextOverflow(format!(
                            "the context of {} positions is full after {} generated tokens",
                            g.cache.capacity(),
                            g.usage.completion_tokens
                        ))));
                    }
                    ContextPolicy::Finish => {
                        *result = Some(Ok(g
                            .end(FinishReason::Length, None)
                            .map_or(Step::Finished, Step::Token)))
                    }
                }
            }
        }
        let Some(engine) = batch
            .iter()
            .zip(&results)
            .find(|(_, r)| r.is_none())
            .map(|(g, _)| g.engine.clone())
        else {
            return results
                .into_iter()
                .map(|r| r.expect("every generation has a result"))
                .collect();
        };
        // Each runner's input this step.
        let mut budget = prompt_budget.max(1);
        let mut runners: Vec<(usize, std::ops::Range<usize>)> = Vec::new(); // (index in batch, prompt tokens read this step)
        for (i, g) in batch.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            if !Arc::ptr_eq(&g.engine, &engine) {
                results[i] = Some(Err(EngineError::InvalidArgument(
                    "generations of different models cannot be batched".into(),
                )));
                continue;
            }
            match &g.pending {
                Pending::Prompt { tokens, read, .. } if budget > 0 => {
                    let take = (tokens.len() - read).min(budget);
                    budget -= take;
                    runners.push((i, *read..read + take));
                }
                Pending::Prompt { .. } => results[i] = Some(Ok(Step::Reading)), // waits for the next step
                Pending::Token(_) => runners.push((i, 0..0)),
            }
        }
        reserve_memory(batch, &mut runners, &mut results, &engine);
        let started = Instant::now();
        let mut inputs: Vec<SeqInput> = Vec::with_capacity(runners.len());
        let mut runner_iter = runners.iter().peekable();
        for (i, g) in batch.iter_mut().enumerate() {
            let Some((_, range)) = runner_iter.next_if(|(r, _)| *r == i) else {
                continue;
            };
            let g = &mut **g;
            let last = g.last_logits();
            let (tokens, want) = match &g.pending {
                Pending::Prompt { tokens, .. } => (
                    &tokens[range.clone()],
                    if range.end == tokens.len() { last } else { Logits::None },
                ),
                Pending::Token(id) => (std::slice::from_ref(id), last),
            };
            inputs.push(SeqInput {
                tokens,
                cache: &mut g.cache,
                want,
            });
        }
        let forward = engine.model.forward_batch(&mut inputs);
        drop(inputs);
        let elapsed = started.elapsed();
        match forward {
            Err(e) => {
                let e = EngineError::from(e);
                for (i, _) in &runners {
                    results[*i] = Some(Err(e.clone()));
                }
            }
            Ok(all_logits) => {
                for ((i, range), logits) in runners.iter().zip(all_logits) {
                    results[*i] = Some(batch[*i].advance(range.clone(), logits, elapsed));
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every generation has a result"))
            .collect()
    }

    /// What this generation needs of the logits of its last position: only the most likely
    /// tokens where they decide its next token and log-probabilities (the GPU then reads back
    /// those alone), else the row.
    fn last_logits(&self) -> Logits {
        if self.sampler.needs_only_top(TOP_K) && self.params.top_logprobs <= TOP_K {
            Logits::Top
        } else {
            Logits::Last
        }
    }

    /// Takes one step's outcome: `read` prompt tokens went into the cache (none when decoding)
    /// and `logits` are the last position's (empty while the prompt is not all read).
    fn advance(
        &mut self,
        read: std::ops::Range<usize>,
        logits: SeqLogits,
        elapsed: Duration,
    ) -> Result<Step, EngineError> {
        match &mut self.pending {
            Pending::Prompt {
                tokens,
                read: done,
                resumed,
            } => {
                self.history.extend_from_slice(&tokens[read.clone()]);
                *done = read.end;
                self.timings.prompt += elapsed;
                if read.end < tokens.len() {
                    self.publish();
                    return Ok(Step::Reading);
                }
                if !*resumed {
                    self.usage.prompt_tokens = tokens.len();
                }
            }
            Pending::Token(id) => {
                self.history.push(*id);
                self.timings.decode += elapsed;
            }
        }
        self.publish();
        // Log-probabilities are the model's, before penalties and truncation reshape the logits.
        let wants_logprobs = self.params.logprobs || self.params.top_logprobs > 0;
        let (id, chosen, top) = match logits {
            SeqLogits::Rows(mut logits) => {
                let raw = wants_logprobs.then(|| logits.clone());
                let id = self.sampler.sample(&mut logits);
                match raw {
                    Some(l) => (id, logprob(&l, id), top_logprobs(&l, self.params.top_logprobs)),
                    None => (id, 0.0, Vec::new()),
                }
            }
            SeqLogits::Top(found) => {
                let id = self.sampler.sample_top(&found.candidates);
                let log_p = |&(t, l): &(TokenId, f32)| (t, l - found.log_sum_exp);
                let chosen = found.candidates.iter().find(|c| c.0 == id).map_or(0.0, |c| log_p(c).1);
                let top = found
                    .candidates
                    .iter()
                    .take(self.params.top_logprobs)
                    .map(log_p)
                    .collect();
                (id, chosen, top)
            }
        };
        let logprobs = if wants_logprobs {
            Logprobs {
                chosen: Some(self.token_logprob(id, chosen)),
                top: top.into_iter().map(|(t, lp)| self.token_logprob(t, lp)).collect(),
            }
        } else {
            Logprobs::default()
        };
        if self.usage.completion_tokens == 0 {
            self.timings.time_to_first_token = self.started.elapsed();
        }
        if self.engine.tokenizer.is_end(id) && !self.params.ignore_eos {
            return Ok(self
                .end(FinishReason::Stop, Some((id, logprobs)))
                .map_or(Step::Finished, Step::Token));
        }
        self.sampler.accept(id);
        self.pending = Pending::Token(id);
        self.usage.completion_tokens += 1;
        let piece = self.decoder.push(&self.engine.tokenizer, id)?;
        let (text, stopped) = self.stop.push(&piece);
        if stopped {
            self.set_finished(FinishReason::Stop);
        }
        Ok(Step::Token(TokenEvent {
            id,
            text,
            logprob: logprobs.chosen,
            top_logprobs: logprobs.top,
        }))
    }

    /// The context is full: keeps the first `keep` tokens and the newer half of the rest, and
    /// reads them again (their positions change, so their keys must be recomputed,
    /// as llama.cpp's context shift re-rotates them) before the next token.
    fn shift_context(&mut self, keep: usize) {
        let Pending::Token(id) = self.pending else { return };
        let mut tokens = std::mem::take(&mut self.history);
        tokens.push(id);
        let keep = keep.min(self.cache.capacity() / 2);
        let drop = (tokens.len() - keep).div_ceil(2);
        tokens.drain(keep..keep + drop);
        self.read_again(tokens, true);
        self.usage.context_shifts += 1;
    }

    /// Drops this generation's KV cache to free memory for older ones: when it next runs, it
    /// reads its tokens again (as a prompt, in chunks) and then continues where it was, with the
    /// same result as if it had never stopped.
    fn preempt(&mut self) {
        if self.finish.is_some() {
            self.cache.clear(); // nothing left to compute: just free its memory
            return;
        }
        match &mut self.pending {
            Pending::Prompt { tokens, resumed, .. } => {
                let (tokens, resumed) = (std::mem::take(tokens), *resumed);
                self.read_again(tokens, resumed);
            }
            Pending::Token(id) => {
                let id = *id;
                let mut tokens = std::mem::take(&mut self.history);
                tokens.push(id);
                self.read_again(tokens, true);
            }
        }
        self.usage.preemptions += 1;
    }

    /// Empties the KV cache; `tokens` are read into it again, as a prompt, before the
    /// generation goes on (`resumed`: past its own prompt already).
    fn read_again(&mut self, tokens: Vec<TokenId>, resumed: bool) {
        self.cache.clear();
        self.history.clear();
        self.published = 0;
        self.pending = Pending::Prompt {
            tokens,
            read: 0,
            resumed,
        };
    }

    /// Hands newly filled blocks to the prefix cache, while their sliding-window parts are
    /// still held, so that a later sequence with the same start can continue after them.
    fn publish(&mut self) {
        let full = self.cache.full_blocks();
        if full.len() > self.published {
            self.engine
                .prefix_cache()
                .insert(self.cache.layout(), &self.history[..full.len() * BLOCK], full);
            self.published = full.len();
        }
    }

    fn token_logprob(&self, id: TokenId, logprob: f32) -> TokenLogprob {
        TokenLogprob {
            id,
            bytes: self.engine.tokenizer.token_bytes(id, true).unwrap_or_default(),
            logprob,
        }
    }

    /// Finishes; text still held (an incomplete character, a possible stop string's start)
    /// comes out in a last event, carrying the end token when there is one.
    fn end(&mut self, reason: FinishReason, end_token: Option<(TokenId, Logprobs)>) -> Option<TokenEvent> {
        self.set_finished(reason);
        let (held, _) = self.stop.push(&self.decoder.finish());
        let text = held + &self.stop.finish();
        match end_token {
            _ if text.is_empty() => None,
            Some((id, lp)) => Some(TokenEvent {
                id,
                text,
                logprob: lp.chosen,
                top_logprobs: lp.top,
            }),
            None => Some(TokenEvent {
                id: self.last_token().unwrap_or_default(),
                text,
                logprob: None,
                top_logprobs: Vec::new(),
            }),
        }
    }

    fn last_token(&self) -> Option<TokenId> {
        match self.pending {
            Pending::Token(id) => Some(id),
            Pending::Prompt { .. } => None,
        }
    }

    /// Stops the generation: it takes no more steps, and `next` returns `None`.
    pub fn cancel(&mut self) {
        if self.finish.is_none() {
            self.set_finished(FinishReason::Cancelled);
        }
    }

    /// Ends it; its KV memory is for the others now.
    fn set_finished(&mut self, reason: FinishReason) {
        self.finish = Some(reason);
        self.cache.clear();
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    pub fn timings(&self) -> Timings {
        self.timings
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }
}
