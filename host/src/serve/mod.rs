//! `rill serve`: the OpenAI-compatible HTTP API (JSON and SSE) and a WebSocket API over one
//! engine instance, on tokio + axum.
//!
//! Requests are parsed and checked on the async side ([`rill_api`]), then queued for the
//! engine thread ([`worker`]); tokens come back through a [`stream::TokenStream`] per request.

mod batch_control;
mod http;
mod metrics;
pub mod minutes;
mod stream;
mod worker;
mod ws;

use crate::backend::BackendKind;
use crate::config::Config;
use anyhow::Context;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use clap::Args;
use rill_api::{ApiError, ServedModel};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on /v1 endpoints.
    #[arg(long, env = "RILL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Requests that may wait for the engine; more get 429 with Retry-After.
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// Most generations the engine runs at once (continuous batching: one pass over the
    /// weights per step for all of them).
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// Inter-token latency to aim at, in ms: the number of generations running at once adapts
    /// (up to --max-batch) so that steps stay within it. 0 always runs --max-batch.
    #[arg(long, default_value_t = 100)]
    pub target_itl_ms: u64,
    /// KV cache memory for all generations and the prefix cache, in MiB (default: whatever
    /// the engine's memory limit leaves). When it is spent, the prefix cache is emptied, then
    /// the latest started generations are preempted and recomputed later; none fails.
    #[arg(long)]
    pub kv_budget_mib: Option<u64>,
    /// Largest request body, in KiB.
    #[arg(long, default_value_t = 1024)]
    pub max_body_kib: usize,
    /// Serve through this edge worker (a wasi:http/proxy component, e.g. from `rill bake`)
    /// instead: a fresh instance per request, as edge platforms run it. An explicit --model
    /// is given to it in a preopened folder (for a worker without a baked model).
    #[arg(long, value_name = "WORKER.wasm")]
    pub worker: Option<PathBuf>,
    /// With --worker: most instances alive at once; more requests wait for one to end.
    #[arg(long, default_value_t = 8)]
    pub max_instances: usize,
}

/// What the server is given from outside the product: more routes (the lab's dashboard) and
/// where each minute's telemetry goes (the lab's metrics store). The default serves the API
/// alone and keeps no per-minute record.
#[derive(Default)]
pub struct Extras {
    pub routes: Router,
    pub minute_sink: Option<Arc<dyn minutes::MinuteSink>>,
}

/// What every handler shares.
pub struct AppState {
    engine: worker::EngineHandle,
    metrics: Arc<metrics::Metrics>,
    /// The loaded model as clients see it, with the generation settings from rill.toml for
    /// what a request leaves out.
    model: ServedModel,
    api_key: Option<String>,
    body_limit: usize,
    requests: AtomicU64,
}

impl AppState {
    fn next_id(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed)
    }
}

pub fn serve(args: ServeArgs, config: Config, model: PathBuf, extras: Extras) -> anyhow::Result<()> {
    let model_id = if crate::models::known(&config.model).is_some() {
        config.model.clone()
    } else {
        model
            .file_stem()
            .map_or_else(|| config.model.clone(), |s| s.to_string_lossy().into_owned())
    };
    let defaults = config.generate_params();
    let metrics = Arc::new(metrics::Metrics::new());
    eprintln!(
        "rill serve: loading {} on the {:?} backend",
        model.display(),
        config.backend
    );
    let kv_budget = args.kv_budget_mib.map(|mib| mib << 20);
    let backend_name = format!("{:?}", config.backend).to_lowercase();
    // After a GPU failure, on the CPU component from then on.
    let open = move |on_cpu: bool| {
        let kind = if on_cpu { BackendKind::Component } else { config.backend };
        let mut backend = config.open_backend_on(kind, &model)?;
        if let Some(bytes) = kv_budget {
            backend.set_kv_budget(bytes)?;
        }
        Ok(backend)
    };
    let target_itl = (args.target_itl_ms > 0).then(|| std::time::Duration::from_millis(args.target_itl_ms));
    let engine = worker::start(
        open,
        args.queue,
        batch_control::BatchControl::new(target_itl, args.max_batch),
        metrics.clone(),
    )?;
    let vocab_size = engine.vocab_size;
    let state = Arc::new(AppState {
        engine,
        metrics,
        model: ServedModel {
            id: model_id,
            vocab_size,
            defaults,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
        api_key: args.api_key.filter(|k| !k.is_empty()),
        body_limit: args.max_body_kib << 10,
        requests: AtomicU64::new(0),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
        if let Some(sink) = extras.minute_sink {
            tokio::spawn(minutes::record(
                state.metrics.minutes.clone(),
                sink,
                state.model.id.clone(),
                backend_name,
            ));
        }
        eprintln!(
            "rill serve: model {} listening on http://{}",
            state.model.id,
            listener.local_addr()?
        );
        let app = router(state).merge(extras.routes);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")
    })
}

fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/chat/completions", post(http::chat_completions))
        .route("/completions", post(http::completions))
        .route("/models", get(http::models))
        .route("/models/{id}", get(http::model))
        .route("/ws", get(ws::upgrade))
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .nest("/v1", v1)
        .route("/health", get(http::health))
        .route("/metrics", get(http::metrics))
        .fallback(http::not_found)
        .with_state(state)
}

/// 401 unless the request carries the configured key (`Authorization: Bearer KEY`).
async fn require_key(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let given = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return http::error_response(&ApiError::unauthorized());
        }
    }
    next.run(request).await
}
