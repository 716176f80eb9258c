//! `/metrics`: request telemetry and engine state in Prometheus' text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: String,
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub prompt_tokens: Counter,
    pub cached_prompt_tokens: Counter,
    pub completion_tokens: Counter,
    pub engine_restarts: Counter,
    pub gpu_fallbacks: Counter,
    pub on_gpu: Gauge,
    pub cancelled: Counter,
    pub queue_seconds: Histogram,
    pub time_to_first_token_seconds: Histogram,
    pub inter_token_seconds: Histogram,
    pub prompt_tokens_per_second: Histogram,
    pub decode_tokens_per_second: Histogram,
    pub step_seconds: Histogram,
    pub active_sequences: Gauge,
    pub batch_limit: Gauge,
    pub prompt_chunk: Gauge,
    pub queue_depth: Gauge,
    pub kv_cache_bytes: Gauge,
    pub prefix_cache_bytes: Gauge,
    pub kv_budget_bytes: Gauge,
    pub preemptions: Counter,
    pub guest_memory_bytes: Gauge,
    /// The same telemetry summed per minute, for the metrics store.
    pub minutes: std::sync::Arc<super::minutes::Minutes>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let seconds = || Histogram::new(exponential_buckets(0.001, 2.0, 18)); // 1 ms .. 131 s
        let rates = || Histogram::new(exponential_buckets(1.0, 2.0, 14)); // 1 .. 8192 tok/s
        let mut m = Metrics {
            requests: Family::default(),
            prompt_tokens: Counter::default(),
            cached_prompt_tokens: Counter::default(),
            completion_tokens: Counter::default(),
            engine_restarts: Counter::default(),
            gpu_fallbacks: Counter::default(),
            on_gpu: Gauge::default(),
            cancelled: Counter::default(),
            queue_seconds: seconds(),
            time_to_first_token_seconds: seconds(),
            inter_token_seconds: seconds(),
            prompt_tokens_per_second: rates(),
            decode_tokens_per_second: rates(),
            step_seconds: seconds(),
            active_sequences: Gauge::default(),
            batch_limit: Gauge::default(),
            prompt_chunk: Gauge::default(),
            queue_depth: Gauge::default(),
            kv_cache_bytes: Gauge::default(),
            prefix_cache_bytes: Gauge::default(),
            kv_budget_bytes: Gauge::default(),
            preemptions: Counter::default(),
            guest_memory_bytes: Gauge::default(),
            minutes: Default::default(),
            registry: Registry::with_prefix("rill"),
        };
        let r = &mut m.registry;
        r.register(
            "requests",
            "HTTP and WebSocket generation requests, by endpoint and status",
            m.requests.clone(),
        );
        r.register("prompt_tokens", "Prompt tokens read", m.prompt_tokens.clone());
        r.register(
            "cached_prompt_tokens",
            "Prompt tokens whose KV came from the prefix cache",
            m.cached_prompt_tokens.clone(),
        );
        r.register("completion_tokens", "Tokens generated", m.completion_tokens.clone());
        r.register(
            "engine_restarts",
            "Engine instances replaced after a trap",
            m.engine_restarts.clone(),
        );
        r.register(
            "gpu_fallbacks",
            "Times the GPU failed (lost, out of memory) and serving moved to the CPU, generations continuing",
            m.gpu_fallbacks.clone(),
        );
        r.register(
            "on_gpu",
            "1 while the engine computes on a GPU, 0 on the CPU",
            m.on_gpu.clone(),
        );
        r.register(
            "cancelled",
            "Generations stopped because their client left or cancelled",
            m.cancelled.clone(),
        );
        r.register(
            "queue_seconds",
            "Time requests waited for the engine",
            m.queue_seconds.clone(),
        );
        r.register(
            "time_to_first_token_seconds",
            "From a request's arrival to its first token",
            m.time_to_first_token_seconds.clone(),
        );
        r.register(
            "inter_token_seconds",
            "Gaps between consecutive tokens of a stream",
            m.inter_token_seconds.clone(),
        );
        r.register(
            "prompt_tokens_per_second",
            "Prompt processing speed per request",
            m.prompt_tokens_per_second.clone(),
        );
        r.register(
            "decode_tokens_per_second",
            "Decode speed per request",
            m.decode_tokens_per_second.clone(),
        );
        r.register(
            "step_seconds",
            "Rounds of the engine loop: one batched step (a token for each stream)",
            m.step_seconds.clone(),
        );
        r.register(
            "active_sequences",
            "Generations the engine is running",
            m.active_sequences.clone(),
        );
        r.register(
            "batch_limit",
            "Generations the adaptive batch size lets run at once (--target-itl-ms)",
            m.batch_limit.clone(),
        );
        r.register(
            "prompt_chunk",
            "Prompt tokens a step may read, over all generations (adapted to --target-itl-ms while others decode)",
            m.prompt_chunk.clone(),
        );
        r.register("queue_depth", "Requests waiting for the engine", m.queue_depth.clone());
        r.register(
            "kv_cache_bytes",
            "KV cache blocks held (generations and prefix cache)",
            m.kv_cache_bytes.clone(),
        );
        r.register(
            "prefix_cache_bytes",
            "KV blocks the prefix cache holds",
            m.prefix_cache_bytes.clone(),
        );
        r.register(
            "kv_budget_bytes",
            "Most KV cache memory the engine may use (--kv-budget-mib; -1: no cap)",
            m.kv_budget_bytes.clone(),
        );
        r.register(
            "preemptions",
            "Times a generation's KV was dropped for memory and recomputed",
            m.preemptions.clone(),
        );
        r.register(
            "guest_memory_bytes",
            "Linear memory of the engine component",
            m.guest_memory_bytes.clone(),
        );
        m
    }

    pub fn count_request(&self, endpoint: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.to_string(),
                status,
            })
            .inc();
        self.minutes.request(status);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
