//! The engine thread: owns the engine instance (a wasmtime store is not shared between
//! threads), takes jobs from a bounded queue one at a time, streams their tokens, and replaces
//! the instance when it traps. When the GPU it computes on fails, serving moves to the CPU and
//! the running generations continue there from their tokens: no stream breaks.

use super::batch_control::BatchControl;
use super::metrics::Metrics;
use super::stream::{End, TokenStream};
use crate::backend::{Backend, EngineFailure, PromptInput, SeqHandle};
use rill_api::{ApiError, Finish, PromptSpec, TokenClock, TokenOut};
use rill_engine::scheduler::{StepLimits, DEFAULT_PROMPT_CHUNK};
use rill_engine::{EngineError, GenerateParams};
use std::collections::VecDeque;
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
    /// Test builds: lose the GPU after this many tokens of this job.
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    pub lose_gpu_after: Option<usize>,
}

/// Opens an engine instance; `true`: on the CPU (after the GPU failed).
type Open = Box<dyn Fn(bool) -> anyhow::Result<Box<dyn Backend>> + Send>;

/// Why a step could not go on with the instance.
enum StepFailure {
    /// The instance trapped: its generations are lost.
    Trapped(String),
    /// Its GPU failed: its generations continue on the CPU.
    GpuLost(String),
}

/// The server's side of the queue.
#[derive(Clone)]
pub struct EngineHandle {
    jobs: SyncSender<Job>,
    queued: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    /// The loaded model's vocabulary size, for checking requests' token ids.
    pub vocab_size: usize,
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

/// Starts the engine thread with an instance from `open`, which also rebuilds it after a trap
/// (and on the CPU after a GPU failure). `batch` decides how many generations run at once.
/// Fails if the first instance cannot be built.
pub fn start(
    open: impl Fn(bool) -> anyhow::Result<Box<dyn Backend>> + Send + 'static,
    queue: usize,
    batch: BatchControl,
    metrics: Arc<Metrics>,
) -> anyhow::Result<EngineHandle> {
    let (jobs, rx) = sync_channel(queue);
    let queued = Arc::new(AtomicUsize::new(0));
    let (loaded, first_load) = sync_channel(1);
    let (m, q) = (metrics.clone(), queued.clone());
    // The instance is built on the thread that uses it: a wasmtime store stays on one thread.
    std::thread::Builder::new().name("rill-engine".into()).spawn(move || {
        match open(false).and_then(|mut b| Ok((b.vocab_size()?, b))) {
            Ok((vocab_size, backend)) => {
                let _ = loaded.send(Ok(vocab_size));
                m.prompt_chunk.set(DEFAULT_PROMPT_CHUNK as i64);
                m.on_gpu.set((backend.name() == "gpu") as i64);
                let worker = Worker {
                    open: Box::new(open),
                    backend,
                    metrics: m,
                    queued: q,
                    batch,
                    active: Vec::new(),
                    waiting: VecDeque::new(),
                    prompt_chunk: DEFAULT_PROMPT_CHUNK,
                    on_cpu: false,
                };
                worker.run(rx)
            }
            Err(e) => {
                let _ = loaded.send(Err(e));
            }
        }
    })?;
    let vocab_size = first_load.recv()??;
    Ok(EngineHandle {
        jobs,
        queued,
        metrics,
        vocab_size,
    })
}

struct Worker {
    open: Open,
    backend: Box<dyn Backend>,
    metrics: Arc<Metrics>,
    queued: Arc<AtomicUsize>,
    batch: BatchControl,
    /// Generations in the engine, in the order they started.
    active: Vec<Active>,
    /// Jobs taken from the queue whose KV cache did not fit in memory yet: they start when an
    /// active generation ends (admission control; the oldest first).
    waiting: VecDeque<Job>,
    /// The prompt chunk the engine has now.
    prompt_chunk: usize,
    /// Whether a GPU failed, so that instances are made on the CPU from then on.
    on_cpu: bool,
}

/// A job the engine is running, with what the worker measures of it.
struct Active {
    job: Job,
    handle: SeqHandle,
    clock: TokenClock,
    tokens: usize,
    /// The ids of the tokens it made, to continue from them on another instance.
    made: Vec<u32>,
    /// Tokens it had made when it moved to the CPU (they are prompt there, output here).
    moved_after: usize,
    /// Test builds: (after how many tokens, the trigger of a trap or a GPU loss).
    #[cfg(feature = "fault-injection")]
    fault: Option<(usize, Box<dyn Fn() + Send>)>,
}

impl Worker {
    fn run(mut self, jobs: Receiver<Job>) {
        self.update_gauges();
        loop {
            // Admission: wait for work when idle, else take what is queued, up to the batch.
            if self.active.is_empty() && self.waiting.is_empty() {
                let Ok(job) = jobs.recv() else { return };
                self.dequeued(job);
            }
            while self.active.len() + self.waiting.len() < self.batch.limit() {
                let Ok(job) = jobs.try_recv() else { break };
                self.dequeued(job);
            }
            self.admit_waiting();
            // One batched step for every active generation. Its duration is the streams'
            // inter-token latency, which sets how many may run at once.
            let (round, streams) = (Instant::now(), self.active.len());
            let reading = self
                .active
                .iter()
                .filter(|a| a.clock.time_to_first_token().is_none())
                .count();
            if reading > 0 {
                self.use_prompt_chunk(self.batch.prompt_chunk(reading < streams));
            }
            match self.step() {
                Ok(()) => {}
                Err(StepFailure::Trapped(message)) => self.trapped(&message),
                Err(StepFailure::GpuLost(message)) => self.move_to_cpu(&message),
            }
            let waiting = self.waiting.len() + self.queued.load(Ordering::SeqCst);
            self.batch.observe(round.elapsed(), streams, reading, waiting);
            self.metrics.step_seconds.observe(round.elapsed().as_secs_f64());
            self.metrics.batch_limit.set(self.batch.limit() as i64);
        }
    }

    /// Has each step read at most `tokens` prompt tokens from now on.
    fn use_prompt_chunk(&mut self, tokens: usize) {
        self.prompt_chunk = tokens;
        self.metrics.prompt_chunk.set(tokens as i64);
    }

    /// A job left the queue.
    fn dequeued(&mut self, job: Job) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
        self.metrics.queue_depth.dec();
        self.waiting.push_back(job);
    }

    /// Starts waiting jobs while they fit.
    fn admit_waiting(&mut self) {
        while self.active.len() < self.batch.limit() {
            let Some(job) = self.waiting.pop_front() else { return };
            if job.stream.is_cancelled() {
                self.metrics.cancelled.inc();
                job.stream.finish(End::Failed(
                    ApiError::invalid("cancelled before it started", None).with_code("cancelled"),
                ));
                continue;
            }
            self.metrics
                .queue_seconds
                .observe(job.stream.arrived.elapsed().as_secs_f64());
            #[cfg(feature = "fault-injection")]
            let fault = match (job.trap_after, job.lose_gpu_after) {
                (Some(n), _) => Some((n, self.backend.arm_trap())),
                (None, Some(n)) => self.backend.arm_gpu_loss().map(|trigger| (n, trigger)),
                (None, None) => None,
            };
            #[cfg(feature = "fault-injection")]
            if let Some((0, trigger)) = &fault {
                trigger();
            }
            let input = match &job.prompt {
                PromptSpec::Text(t) => PromptInput::Text(t),
                PromptSpec::Tokens(t) => PromptInput::Tokens(t),
                PromptSpec::Chat(m) => PromptInput::Chat(m),
            };
            match self.backend.start(input, job.params.clone()) {
                Ok(handle) => {
                    let clock = TokenClock::started(job.stream.arrived);
                    self.active.push(Active {
                        job,
                        handle,
                        clock,
                        tokens: 0,
                        made: Vec::new(),
                        moved_after: 0,
                        #[cfg(feature = "fault-injection")]
                        fault,
                    });
                    self.update_gauges();
                }
                // Memory is taken by running generations: wait for one to end.
                Err(EngineFailure::Engine(EngineError::OutOfMemory(_))) if !self.active.is_empty() => {
                    self.waiting.push_front(job);
                    return;
                }
                Err(EngineFailure::Trapped(message)) => {
                    job.stream.finish(End::Failed(self.trap_error(&message)));
                    self.trapped(&message);
                    return;
                }
                Err(EngineFailure::Engine(e)) => job.stream.finish(End::Failed(ApiError::from(&e))),
            }
        }
    }

    /// Ends the generations whose clients went away, then runs one batched step for the rest
    /// and delivers what it made. An error is the instance trapping (every generation is lost)
    /// or its GPU failing (they continue elsewhere).
    fn step(&mut self) -> Result<(), StepFailure> {
        let mut i = 0;
        while i < self.active.len() {
            if !self.active[i].job.stream.is_cancelled() {
                i += 1;
                continue;
            }
            self.metrics.cancelled.inc();
            let handle = self.active[i].handle;
            if let Err(EngineFailure::Trapped(message)) =
                self.backend.cancel(handle).and_then(|_| self.backend.finish(handle))
            {
                return Err(StepFailure::Trapped(message));
            }
            let end = End::Failed(ApiError::invalid("cancelled by the client", None).with_code("cancelled"));
            self.end(i, end);
        }
        if self.active.is_empty() {
            return Ok(());
        }
        let limits = StepLimits {
            generations: self.active.len(),
            prompt_tokens: self.prompt_chunk,
        };
        let stepped = self
            .backend
            .step(limits)
            .map_err(|e| StepFailure::Trapped(e.to_string()))?;
        // A failed GPU fails every generation of the step: none of them has ended.
        if let Some(Err(EngineError::DeviceLost(message))) = stepped.iter().find_map(|p| p.end.as_ref()) {
            return Err(StepFailure::GpuLost(message.clone()));
        }
        let now = Instant::now();
        for progress in stepped {
            let Some(i) = self.active.iter().position(|a| a.handle == progress.handle) else {
                continue;
            };
            self.deliver(i, progress.event, now);
            let ended = match progress.end {
                None => continue,
                Some(Ok(_)) => self
                    .backend
                    .finish(progress.handle)
                    .map(|outcome| self.done(i, outcome)),
                Some(Err(e)) => self
                    .backend
                    .finish(progress.handle)
                    .map(|_| End::Failed(ApiError::from(&e))),
            };
            match ended {
                Ok(end) => self.end(i, end),
                Err(EngineFailure::Trapped(message)) => return Err(StepFailure::Trapped(message)),
                Err(EngineFailure::Engine(e)) => self.end(i, End::Failed(ApiError::from(&e))),
            }
        }
        Ok(())
    }

    /// Hands a step's token to active generation `i`'s stream, with its timing.
    fn deliver(&mut self, i: usize, event: Option<rill_engine::TokenEvent>, now: Instant) {
        let a = &mut self.active[i];
        let Some(event) = event else { return };
        match a.clock.token(now) {
            Some(gap) => {
                self.metrics.inter_token_seconds.observe(gap.as_secs_f64());
                self.metrics.minutes.gap(gap);
            }
            None => {
                self.metrics
                    .time_to_first_token_seconds
                    .observe((now - a.job.stream.arrived).as_secs_f64());
                self.metrics.minutes.first_token(now - a.job.stream.arrived);
            }
        }
        a.tokens += 1;
        a.made.push(event.id);
        a.job.stream.push(TokenOut {
            text: event.text,
            logprob: event.logprob,
            top_logprobs: event.top_logprobs,
        });
        #[cfg(feature = "fault-injection")]
        if let Some((n, trigger)) = &a.fault {
            if a.tokens >= *n {
                trigger();
            }
        }
    }

    /// Active generation `i` has ended: its stream gets `end`, and a waiting job may start.
    fn end(&mut self, i: usize, end: End) {
        let a = self.active.remove(i);
        a.job.stream.finish(end);
        self.update_gauges();
        self.admit_waiting();
    }

    /// The end of a generation that ran to completion, with its telemetry.
    fn done(&self, i: usize, outcome: crate::backend::Outcome) -> End {
        let a = &self.active[i];
        // Tokens made before a move to the CPU were read there as prompt: they are output.
        let mut usage = outcome.usage;
        usage.prompt_tokens -= a.moved_after;
        usage.completion_tokens += a.moved_after;
        let timings = a.clock.timings(usage, &outcome.timings);
        self.metrics.prompt_tokens.inc_by(usage.prompt_tokens as u64);
        self.metrics.cached_prompt_tokens.inc_by(usage.cached_tokens as u64);
        self.metrics.preemptions.inc_by(usage.preemptions as u64);
        self.metrics.completion_tokens.inc_by(usage.completion_tokens as u64);
        self.metrics
            .minutes
            .tokens(usage.prompt_tokens as u64, usage.completion_tokens as u64);
        self.metrics
            .prompt_tokens_per_second
            .observe(timings.prompt_tokens_per_second);
        if timings.decode_ms > 0.0 {
            self.metrics
                .decode_tokens_per_second
                .observe(timings.decode_tokens_per_second);
        }
        let finish = Finish::of(outcome.finish);
        End::Done { finish, usage, timings }
    }

    fn update_gauges(&mut self) {
        self.metrics.active_sequences.set(self.active.len() as i64);
        if let Ok(kv) = self.backend.kv_memory() {
            self.metrics.kv_cache_bytes.set(kv.used as i64);
            self.metrics.prefix_cache_bytes.set(kv.prefix_cache as i64);
            self.metrics.kv_budget_bytes.set(i64::try_from(kv.budget).unwrap_or(-1));
        }
        if let Some(bytes) = self.backend.memory_bytes() {
            self.metrics.guest_memory_bytes.set(bytes as i64);
        }
    }

    fn trap_error(&self, message: &str) -> ApiError {
        ApiError::internal(format!(
            "the engine failed on this request (it trapped: {message}); it has been restarted, retry"
        ))
    }

    /// The instance trapped: every running generation ends with the error, and a fresh
    /// instance takes over.
    fn trapped(&mut self, message: &str) {
        eprintln!("rill serve: the engine trapped ({message}); starting a fresh instance");
        self.metrics.engine_restarts.inc();
        for a in std::mem::take(&mut self.active) {
            a.job.stream.finish(End::Failed(self.trap_error(message)));
        }
        self.replace_instance();
        self.update_gauges();
    }

    /// The GPU failed: serving moves to the CPU component, and each running generation starts
    /// again there from its prompt and the tokens it made (read as prompt), asking for the
    /// tokens it has left; its stream goes on as if nothing happened.
    fn move_to_cpu(&mut self, message: &str) {
        eprintln!("rill serve: the GPU failed ({message}); serving on the CPU from now on");
        self.metrics.gpu_fallbacks.inc();
        self.metrics.on_gpu.set(0);
        self.on_cpu = true;
        self.replace_instance();
        for mut a in std::mem::take(&mut self.active) {
            let prompt = match &a.job.prompt {
                PromptSpec::Text(t) => PromptInput::Text(t),
                PromptSpec::Tokens(t) => PromptInput::Tokens(t),
                PromptSpec::Chat(m) => PromptInput::Chat(m),
            };
            let mut params = a.job.params.clone();
            params.max_tokens = params.max_tokens.saturating_sub(a.made.len()).max(1);
            let resumed = self.backend.prompt_tokens(prompt).and_then(|mut tokens| {
                tokens.extend(&a.made);
                self.backend.start(PromptInput::Tokens(&tokens), params)
            });
            match resumed {
                Ok(handle) => {
                    a.handle = handle;
                    a.moved_after = a.made.len();
                    #[cfg(feature = "fault-injection")]
                    {
                        a.fault = None;
                    }
                    self.active.push(a);
                }
                Err(e) => {
                    let e = match e {
                        EngineFailure::Engine(e) => ApiError::from(&e),
                        EngineFailure::Trapped(m) => self.trap_error(&m),
                    };
                    a.job.stream.finish(End::Failed(e));
                }
            }
        }
        self.update_gauges();
    }

    /// Builds a fresh instance, retrying until one loads (the model file is the same one that
    /// loaded at start, so failures here are transient: memory, I/O).
    fn replace_instance(&mut self) {
        let mut wait = Duration::from_millis(100);
        loop {
            match (self.open)(self.on_cpu) {
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
