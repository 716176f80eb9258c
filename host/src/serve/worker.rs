//! The engine thread: owns the engine instance (a wasmtime store is not shared between
//! threads), takes jobs from a bounded queue one at a time, streams their tokens, and replaces
//! the instance when it traps.

use super::metrics::Metrics;
use super::stream::{End, TokenStream};
use crate::backend::{Backend, EngineFailure, FailureKind, PromptInput};
use rill_api::{ApiError, Finish, Latency, PromptSpec, Timings, TokenOut, Usage};
use rill_engine::engine::FinishReason;
use rill_engine::GenerateParams;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One generation to run.
pub struct Job {
    pub prompt: PromptSpec,
    pub params: GenerateParams,
    pub stream: Arc<TokenStream>,
    /// Test builds: make the engine trap after this many tokens of this job.
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    pub trap_after: Option<usize>,
}

/// The server's side of the queue.
#[derive(Clone)]
pub struct EngineHandle {
    jobs: SyncSender<Job>,
    queued: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl EngineHandle {
    /// Queues a job, or refuses with 429 when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        // Counted before sending, so the engine thread's decrement never comes first.
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.metrics.queue_depth.inc();
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.metrics.queue_depth.dec();
                let depth = self.queued.fetch_sub(1, Ordering::SeqCst) - 1;
                Err(match e {
                    TrySendError::Full(_) => ApiError::queue_full(depth),
                    TrySendError::Disconnected(_) => ApiError::unavailable("the engine has stopped"),
                })
            }
        }
    }
}

/// Starts the engine thread with an instance from `open`, which also rebuilds it after a trap.
/// Fails if the first instance cannot be built.
pub fn start(open: impl Fn() -> anyhow::Result<Box<dyn Backend>> + Send + 'static, queue: usize, kv_bytes_per_token: usize, metrics: Arc<Metrics>) -> anyhow::Result<EngineHandle> {
    let (jobs, rx) = sync_channel(queue);
    let queued = Arc::new(AtomicUsize::new(0));
    let (loaded, first_load) = sync_channel(1);
    let (m, q) = (metrics.clone(), queued.clone());
    // The instance is built on the thread that uses it: a wasmtime store stays on one thread.
    std::thread::Builder::new().name("rill-engine".into()).spawn(move || match open() {
        Ok(backend) => {
            let _ = loaded.send(Ok(()));
            Worker { open: Box::new(open), backend, metrics: m, queued: q, kv_bytes_per_token }.run(rx)
        }
        Err(e) => {
            let _ = loaded.send(Err(e));
        }
    })?;
    first_load.recv()??;
    Ok(EngineHandle { jobs, queued, metrics })
}

struct Worker {
    open: Box<dyn Fn() -> anyhow::Result<Box<dyn Backend>> + Send>,
    backend: Box<dyn Backend>,
    metrics: Arc<Metrics>,
    queued: Arc<AtomicUsize>,
    kv_bytes_per_token: usize,
}

/// The marker error with which a token callback stops a generation whose client left.
#[derive(Debug, thiserror::Error)]
#[error("the client went away")]
struct ClientGone;

impl Worker {
    fn run(mut self, jobs: Receiver<Job>) {
        self.update_memory();
        for job in jobs {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            self.metrics.queue_depth.dec();
            if job.stream.is_cancelled() {
                self.metrics.cancelled.inc();
                job.stream.finish(End::Failed(ApiError::invalid("cancelled before it started", None).with_code("cancelled")));
                continue;
            }
            self.metrics.active_sequences.inc();
            self.metrics.kv_cache_bytes.set((job.params.context * self.kv_bytes_per_token) as i64);
            let end = self.run_job(&job);
            self.metrics.active_sequences.dec();
            self.metrics.kv_cache_bytes.set(0);
            job.stream.finish(end);
            self.update_memory();
        }
    }

    fn update_memory(&self) {
        if let Some(bytes) = self.backend.memory_bytes() {
            self.metrics.guest_memory_bytes.set(bytes as i64);
        }
    }

    fn run_job(&mut self, job: &Job) -> End {
        let started = Instant::now();
        let queue = started - job.stream.arrived;
        self.metrics.queue_seconds.observe(queue.as_secs_f64());
        let stream = &job.stream;
        let mut last: Option<Instant> = None;
        let mut gaps_ms = Vec::new();
        let mut first_token: Option<Instant> = None;
        let input = match &job.prompt {
            PromptSpec::Text(t) => PromptInput::Text(t),
            PromptSpec::Tokens(t) => PromptInput::Tokens(t),
            PromptSpec::Chat(m) => PromptInput::Chat(m),
        };
        #[cfg(feature = "fault-injection")]
        let trap = job.trap_after.map(|n| (n, self.backend.arm_trap()));
        let mut tokens = 0;
        #[cfg(feature = "fault-injection")]
        if let Some((0, trigger)) = &trap {
            trigger();
        }
        let result = self.backend.generate(input, job.params.clone(), &mut |event| {
            if stream.is_cancelled() {
                return Err(ClientGone.into());
            }
            tokens += 1;
            #[cfg(feature = "fault-injection")]
            if let Some((n, trigger)) = &trap {
                if tokens == *n {
                    trigger();
                }
            }
            let now = Instant::now();
            match last {
                Some(prev) => {
                    let gap = now - prev;
                    self.metrics.inter_token_seconds.observe(gap.as_secs_f64());
                    gaps_ms.push(gap.as_secs_f64() * 1e3);
                }
                None => first_token = Some(now),
            }
            last = Some(now);
            stream.push(TokenOut { text: event.text, logprob: event.logprob, top_logprobs: event.top_logprobs });
            Ok(())
        });
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) if e.is::<ClientGone>() => {
                self.metrics.cancelled.inc();
                return End::Failed(ApiError::invalid("cancelled by the client", None).with_code("cancelled"));
            }
            Err(e) => return self.failed(e),
        };
        let usage = Usage { prompt_tokens: outcome.usage.prompt_tokens, completion_tokens: outcome.usage.completion_tokens };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let t = outcome.timings;
        let timings = Timings {
            queue_ms: ms(queue),
            prompt_ms: ms(t.prompt),
            prompt_tokens_per_second: rill_api::response::rate(usage.prompt_tokens, ms(t.prompt)),
            time_to_first_token_ms: first_token.map_or(0.0, |f| ms(f - job.stream.arrived)),
            decode_ms: ms(t.decode),
            decode_tokens_per_second: rill_api::response::rate(usage.completion_tokens.saturating_sub(1), ms(t.decode)),
            inter_token_ms: Latency::of(&gaps_ms),
        };
        self.metrics.prompt_tokens.inc_by(usage.prompt_tokens as u64);
        self.metrics.completion_tokens.inc_by(usage.completion_tokens as u64);
        if let Some(f) = first_token {
            self.metrics.time_to_first_token_seconds.observe((f - job.stream.arrived).as_secs_f64());
        }
        self.metrics.prompt_tokens_per_second.observe(timings.prompt_tokens_per_second);
        if timings.decode_ms > 0.0 {
            self.metrics.decode_tokens_per_second.observe(timings.decode_tokens_per_second);
        }
        let finish = match outcome.finish {
            Some(FinishReason::Length) => Finish::Length,
            _ => Finish::Stop,
        };
        End::Done { finish, usage, timings }
    }

    /// Maps an engine failure to what the client is told; a trap also replaces the instance.
    fn failed(&mut self, e: anyhow::Error) -> End {
        let Some(failure) = e.downcast_ref::<EngineFailure>() else {
            return End::Failed(ApiError::internal(format!("{e:#}")));
        };
        End::Failed(match failure {
            EngineFailure::Reported { kind, message } => match kind {
                FailureKind::InvalidArgument | FailureKind::Unsupported => ApiError::invalid(message.clone(), None),
                FailureKind::ContextOverflow => ApiError::invalid(message.clone(), None).with_code("context_length_exceeded"),
                FailureKind::OutOfMemory => ApiError::unavailable(message.clone()),
                FailureKind::Cancelled => ApiError::invalid(message.clone(), None).with_code("cancelled"),
                FailureKind::InvalidModel | FailureKind::Internal => ApiError::internal(message.clone()),
            },
            EngineFailure::Trapped(message) => {
                eprintln!("rill serve: the engine trapped ({message}); starting a fresh instance");
                self.metrics.engine_restarts.inc();
                self.replace_instance();
                ApiError::internal(format!("the engine failed on this request (it trapped: {message}); it has been restarted, retry"))
            }
        })
    }

    /// Builds a fresh instance, retrying until one loads (the model file is the same one that
    /// loaded at start, so failures here are transient: memory, I/O).
    fn replace_instance(&mut self) {
        let mut wait = Duration::from_millis(100);
        loop {
            match (self.open)() {
                Ok(b) => {
                    self.backend = b;
                    return;
                }
                Err(e) => {
                    eprintln!("rill serve: rebuilding the engine failed: {e:#}; retrying in {wait:?}");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}
