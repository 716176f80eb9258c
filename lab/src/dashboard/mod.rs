//! The performance dashboard: one page (embedded, with uPlot vendored beside it, so it works
//! offline) that charts the metrics store, shows the compatibility matrix and flags
//! regressions. `rill dashboard` serves it alone; `rill serve` serves it at /dashboard too.
//!
//! The page reads everything from four JSON endpoints under /dashboard/api/, each a fresh
//! read of the store (SQLite handles a writer and readers at once).

use crate::bench_history;
use crate::regression::Thresholds;
use crate::store::Store;
use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

const PAGE: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const UPLOT_JS: &str = include_str!("vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("vendor/uPlot.min.css");

/// How many earlier runs the regression panel compares the latest one with.
const HISTORY_WINDOW: usize = 10;

/// Where the store is; each request opens it (cheap for SQLite, and never holds a lock).
#[derive(Clone)]
pub struct Db(Arc<PathBuf>);

impl Db {
    pub fn new(path: PathBuf) -> Db {
        Db(Arc::new(path))
    }

    fn open(&self) -> anyhow::Result<Store> {
        Store::open(&self.0, crate::store::DEFAULT_RETENTION)
    }
}

/// The page at /dashboard/ (its links are relative to it) and its API, to merge into a server.
pub fn router<S: Clone + Send + Sync + 'static>(db: Db) -> Router<S> {
    Router::new()
        .route("/dashboard", get(|| async { Redirect::permanent("/dashboard/") }))
        .route(
            "/dashboard/",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS) }),
        )
        .route(
            "/dashboard/uPlot.iife.min.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], UPLOT_JS) }),
        )
        .route(
            "/dashboard/uPlot.min.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], UPLOT_CSS) }),
        )
        .route("/dashboard/api/runs", get(runs))
        .route("/dashboard/api/serve", get(serve_minutes))
        .route("/dashboard/api/matrix", get(matrix))
        .route("/dashboard/api/regressions", get(regressions))
        .with_state(db)
}

/// `rill dashboard`: the dashboard alone, until Ctrl-C.
pub fn serve(db: PathBuf, host: &str, port: u16) -> anyhow::Result<()> {
    let db = Db::new(db);
    // Fail now, not on the first page load, if the store cannot be opened.
    db.open()?;
    let app = router(db.clone()).route("/", get(|| async { Redirect::temporary("/dashboard/") }));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .with_context(|| format!("listening on {host}:{port}"))?;
        eprintln!(
            "rill dashboard: the store {}, the page /dashboard/, listening on http://{}",
            db.0.display(),
            listener.local_addr()?
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")
    })
}

/// A store failure as a 500 with the reason (the page shows it).
fn failure(e: anyhow::Error) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": format!("{e:#}") })),
    )
        .into_response()
}

fn reply(result: anyhow::Result<Value>) -> Response {
    result.map_or_else(failure, |v| Json(v).into_response())
}

async fn runs(State(db): State<Db>) -> Response {
    reply((|| {
        let runs = db.open()?.runs()?;
        Ok(Value::Array(
            runs.into_iter()
                .map(|r| {
                    let figures: serde_json::Map<String, Value> =
                        r.figures.iter().map(|f| (f.name.clone(), json!(f.value))).collect();
                    let mut v = serde_json::to_value(&r).expect("a run serialises");
                    v["figures"] = Value::Object(figures);
                    v
                })
                .collect(),
        ))
    })())
}

async fn serve_minutes(State(db): State<Db>) -> Response {
    reply((|| Ok(serde_json::to_value(db.open()?.serve_minutes()?)?))())
}

async fn matrix(State(db): State<Db>) -> Response {
    reply((|| Ok(serde_json::to_value(db.open()?.compat_matrix()?)?))())
}

async fn regressions(State(db): State<Db>) -> Response {
    reply((|| {
        let runs = db.open()?.runs()?;
        Ok(serde_json::to_value(bench_history::latest_against_history(
            &runs,
            HISTORY_WINDOW,
            Thresholds::default(),
        ))?)
    })())
}
