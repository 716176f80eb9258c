//! `rill serve --worker worker.wasm`: HTTP served by a `wasi:http/proxy` component (the edge
//! worker, baked or not), one fresh instance per request as edge platforms run it, on
//! wasmtime-wasi-http and hyper as `wasmtime serve` does.
//!
//! The instances run on tokio's threads; an epoch tick every 10 ms makes a busy instance yield,
//! so one long generation cannot keep the server from accepting and starting others.

use super::{linker, WorkerState};
use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use rill_api::ApiError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use wasmtime::Store;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

/// How often a running instance yields to the server's other work.
const YIELD_EVERY: Duration = Duration::from_millis(10);

/// What every request shares: the worker, instantiated up to its imports, and how many
/// instances may run at once.
struct WorkerServer {
    pre: ProxyPre<WorkerState>,
    /// The model file an unbaked worker reads (its folder preopened as /models).
    model: Option<PathBuf>,
    instances: Arc<Semaphore>,
}

/// Serves `worker` on `host:port` until Ctrl-C; `model` is given to instances that read one.
pub fn serve(worker: &Path, model: Option<PathBuf>, host: &str, port: u16, max_instances: usize) -> anyhow::Result<()> {
    let wasm = std::fs::read(worker).with_context(|| format!("reading {}", worker.display()))?;
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    let engine = wasmtime::Engine::new(&config).map_err(|e| anyhow!("configuring wasmtime: {e:#}"))?;
    let name = worker
        .file_stem()
        .map_or_else(|| "worker".into(), |s| s.to_string_lossy().into_owned());
    eprintln!(
        "rill serve: compiling {} (cached after the first time)",
        worker.display()
    );
    let component =
        crate::compiled::component(&engine, &name, &wasm).with_context(|| format!("loading {}", worker.display()))?;
    drop(wasm);
    let pre = linker(&engine)?
        .instantiate_pre(&component)
        .and_then(ProxyPre::new)
        .map_err(|e| {
            anyhow!(
                "{} is not a wasi:http/proxy component this host can run: {e:#}",
                worker.display()
            )
        })?;
    if let Some(model) = &model {
        // The first request would find out; say it now.
        WorkerState::new(Some(model)).with_context(|| format!("giving the worker {}", model.display()))?;
    }
    std::thread::spawn(move || loop {
        std::thread::sleep(YIELD_EVERY);
        engine.increment_epoch();
    });
    let server = Arc::new(WorkerServer {
        pre,
        model,
        instances: Arc::new(Semaphore::new(max_instances.max(1))),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .with_context(|| format!("listening on {host}:{port}"))?;
        eprintln!(
            "rill serve: worker {} listening on http://{}",
            worker.display(),
            listener.local_addr()?
        );
        loop {
            let (client, _) = tokio::select! {
                accepted = listener.accept() => accepted.context("accepting a connection")?,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            let server = server.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let server = server.clone();
                    async move { Ok::<_, std::convert::Infallible>(server.handle(request).await) }
                });
                // A client that hangs up mid-response is its own business.
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(client), service)
                    .await;
            });
        }
    })
}

impl WorkerServer {
    /// Runs `request` through a fresh instance. The instance lives on in its own task after
    /// the head is sent, writing the body; a worker that fails before answering gets a 500.
    async fn handle(&self, request: hyper::Request<hyper::body::Incoming>) -> hyper::Response<HyperOutgoingBody> {
        match self.start(request).await {
            Ok(response) => response,
            Err(e) => error_response(&ApiError::internal(format!("the worker failed: {e:#}"))),
        }
    }

    async fn start(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> anyhow::Result<hyper::Response<HyperOutgoingBody>> {
        let permit = self.instances.clone().acquire_owned().await?;
        let mut store = Store::new(self.pre.engine(), WorkerState::new(self.model.as_deref())?);
        store.epoch_deadline_async_yield_and_update(1);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();
        let instance = tokio::spawn(async move {
            let _permit = permit;
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(anyhow!("it answered with error {code:?}")),
            // The outparam was dropped unset: the instance ended (or trapped) without answering.
            Err(_) => match instance.await {
                Ok(Ok(())) => Err(anyhow!("it returned without a response")),
                Ok(Err(e)) => Err(anyhow!("{e:#}")),
                Err(e) => Err(e.into()),
            },
        }
    }
}

fn error_response(e: &ApiError) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(e.body().to_string()))
        .map_err(|never| match never {})
        .boxed_unsync();
    hyper::Response::builder()
        .status(e.status)
        .header("content-type", "application/json")
        .body(body)
        .expect("a valid status and header")
}
