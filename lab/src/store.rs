//! The metrics store: benchmark runs (`rill bench --record`), `rill serve`'s per-minute request
//! aggregates and compatibility checks, in one SQLite file (rusqlite with its bundled SQLite).
//! Default path `$XDG_DATA_HOME/rill/metrics.sqlite`; `--db PATH` overrides it.
//!
//! The schema is versioned with SQLite's `user_version`: [`MIGRATIONS`] holds every step from
//! an empty file, each applied once, in order, in a transaction. Rows older than the retention
//! period are deleted when the store is opened.

use anyhow::{anyhow, Context};
use rill_host::serve::minutes::MinuteSink;
pub use rill_host::serve::minutes::ServeMinute;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long rows are kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// Schema steps: `MIGRATIONS[i]` takes the file from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: benchmark runs and their figures; serve's per-minute aggregates; compatibility checks.
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,          -- unix seconds
        git_commit TEXT NOT NULL,
        version TEXT NOT NULL,
        host TEXT NOT NULL,             -- what ran the engine: rill (wasmtime), native, ...
        runtime TEXT NOT NULL,          -- e.g. wasmtime 48.0.8
        cpu TEXT NOT NULL,
        backend TEXT NOT NULL,
        kernel_path TEXT NOT NULL,
        model TEXT NOT NULL,
        quant TEXT NOT NULL,
        kind TEXT NOT NULL              -- single (pp/tg) or concurrency
    );
    CREATE INDEX runs_time ON runs(time);
    CREATE TABLE figures (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value REAL NOT NULL,
        better TEXT NOT NULL CHECK (better IN ('higher', 'lower')),
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE serve_minutes (
        minute INTEGER NOT NULL,        -- unix seconds at the minute's start
        model TEXT NOT NULL,
        backend TEXT NOT NULL,
        requests INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        ttft_ms_p50 REAL, ttft_ms_p95 REAL,
        itl_ms_p50 REAL, itl_ms_p95 REAL,
        PRIMARY KEY (minute, model, backend)
    );
    CREATE TABLE compat (
        time INTEGER NOT NULL,
        host TEXT NOT NULL,             -- rill, wasmtime serve, jco, chromium, ...
        feature TEXT NOT NULL,          -- load, stream, sse, websocket, simd128, ...
        passed INTEGER NOT NULL,
        detail TEXT NOT NULL,
        PRIMARY KEY (time, host, feature)
    );",
];

pub struct Store {
    conn: Connection,
}

/// A benchmark run as recorded: where and what it measured, and its figures.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub time: u64,
    pub git_commit: String,
    pub version: String,
    pub host: String,
    pub runtime: String,
    pub cpu: String,
    pub backend: String,
    pub kernel_path: String,
    pub model: String,
    pub quant: String,
    pub kind: String,
    pub figures: Vec<Figure>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub better: crate::regression::Better,
}

/// One compatibility check's result.
#[derive(Clone, Debug, Serialize)]
pub struct CompatResult {
    pub time: u64,
    pub host: String,
    pub feature: String,
    pub passed: bool,
    pub detail: String,
}

/// `rill serve`'s telemetry into the store at this path, opened per minute (the dashboard and
/// other servers use the file in between).
pub struct MinuteRecorder(pub PathBuf);

impl MinuteSink for MinuteRecorder {
    fn record(&self, minute: &ServeMinute) -> anyhow::Result<()> {
        Store::open(&self.0, DEFAULT_RETENTION)?.record_minute(minute)
    }
}

pub fn default_path() -> PathBuf {
    rill_host::dirs::data_home().join("rill/metrics.sqlite")
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn better_name(b: crate::regression::Better) -> &'static str {
    match b {
        crate::regression::Better::Higher => "higher",
        crate::regression::Better::Lower => "lower",
    }
}

impl Store {
    /// Opens (creating it and its folder if needed) and migrates the store at `path`, then
    /// deletes rows older than `retention`.
    pub fn open(path: &Path, retention: Duration) -> anyhow::Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("opening the metrics store {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "foreign_keys", true)?;
        let mut store = Store { conn };
        store
            .migrate()
            .with_context(|| format!("migrating the metrics store {}", path.display()))?;
        store.prune(retention)?;
        Ok(store)
    }

    /// The schema version of the file.
    pub fn version(&self) -> anyhow::Result<usize> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize)
    }

    fn migrate(&mut self) -> anyhow::Result<()> {
        let from = self.version()?;
        if from > MIGRATIONS.len() {
            return Err(anyhow!(
                "the file has schema version {from}, newer than this rill knows ({}); use a newer rill",
                MIGRATIONS.len()
            ));
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(from) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(step)
                .with_context(|| format!("schema step {}", i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Deletes what is older than `retention`; how many rows went.
    pub fn prune(&mut self, retention: Duration) -> anyhow::Result<usize> {
        let cutoff = now().saturating_sub(retention.as_secs()) as i64;
        let tx = self.conn.transaction()?;
        let mut n = tx.execute("DELETE FROM runs WHERE time < ?1", [cutoff])?;
        n += tx.execute("DELETE FROM serve_minutes WHERE minute < ?1", [cutoff])?;
        n += tx.execute("DELETE FROM compat WHERE time < ?1", [cutoff])?;
        tx.commit()?;
        Ok(n)
    }

    /// Stores `run`; its id.
    pub fn record_run(&mut self, run: &Run) -> anyhow::Result<i64> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO runs (time, git_commit, version, host, runtime, cpu, backend, kernel_path, model, quant, kind)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                run.time as i64,
                run.git_commit,
                run.version,
                run.host,
                run.runtime,
                run.cpu,
                run.backend,
                run.kernel_path,
                run.model,
                run.quant,
                run.kind
            ],
        )?;
        let id = tx.last_insert_rowid();
        for f in &run.figures {
            tx.execute(
                "INSERT INTO figures (run_id, name, value, better) VALUES (?1, ?2, ?3, ?4)",
                params![id, f.name, f.value, better_name(f.better)],
            )?;
        }
        tx.commit()?;
        Ok(id)
    }

    /// Every stored run, oldest first, with its figures.
    pub fn runs(&self) -> anyhow::Result<Vec<Run>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, time, git_commit, version, host, runtime, cpu, backend, kernel_path, model, quant, kind FROM runs ORDER BY time, id",
        )?;
        let mut figures = self
            .conn
            .prepare("SELECT name, value, better FROM figures WHERE run_id = ?1 ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Run {
                    time: r.get::<_, i64>(1)? as u64,
                    git_commit: r.get(2)?,
                    version: r.get(3)?,
                    host: r.get(4)?,
                    runtime: r.get(5)?,
                    cpu: r.get(6)?,
                    backend: r.get(7)?,
                    kernel_path: r.get(8)?,
                    model: r.get(9)?,
                    quant: r.get(10)?,
                    kind: r.get(11)?,
                    figures: Vec::new(),
                },
            ))
        })?;
        let mut runs = Vec::new();
        for row in rows {
            let (id, mut run) = row?;
            run.figures = figures
                .query_map([id], |r| {
                    let better: String = r.get(2)?;
                    let better = if better == "lower" {
                        crate::regression::Better::Lower
                    } else {
                        crate::regression::Better::Higher
                    };
                    Ok(Figure {
                        name: r.get(0)?,
                        value: r.get(1)?,
                        better,
                    })
                })?
                .collect::<Result<_, _>>()?;
            runs.push(run);
        }
        Ok(runs)
    }

    /// Adds `m` to its minute's row (a server may flush one minute in several pieces; the
    /// counts add up, the percentiles are the last piece's).
    pub fn record_minute(&mut self, m: &ServeMinute) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO serve_minutes (minute, model, backend, requests, errors, prompt_tokens, completion_tokens, ttft_ms_p50, ttft_ms_p95, itl_ms_p50, itl_ms_p95)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (minute, model, backend) DO UPDATE SET
                requests = requests + excluded.requests, errors = errors + excluded.errors,
                prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens,
                ttft_ms_p50 = excluded.ttft_ms_p50, ttft_ms_p95 = excluded.ttft_ms_p95,
                itl_ms_p50 = excluded.itl_ms_p50, itl_ms_p95 = excluded.itl_ms_p95",
            params![m.minute as i64, m.model, m.backend, m.requests as i64, m.errors as i64, m.prompt_tokens as i64, m.completion_tokens as i64, m.ttft_ms_p50, m.ttft_ms_p95, m.itl_ms_p50, m.itl_ms_p95],
        )?;
        Ok(())
    }

    pub fn serve_minutes(&self) -> anyhow::Result<Vec<ServeMinute>> {
        let mut stmt = self.conn.prepare(
            "SELECT minute, model, backend, requests, errors, prompt_tokens, completion_tokens, ttft_ms_p50, ttft_ms_p95, itl_ms_p50, itl_ms_p95 FROM serve_minutes ORDER BY minute",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ServeMinute {
                minute: r.get::<_, i64>(0)? as u64,
                model: r.get(1)?,
                backend: r.get(2)?,
                requests: r.get::<_, i64>(3)? as u64,
                errors: r.get::<_, i64>(4)? as u64,
                prompt_tokens: r.get::<_, i64>(5)? as u64,
                completion_tokens: r.get::<_, i64>(6)? as u64,
                ttft_ms_p50: r.get(7)?,
                ttft_ms_p95: r.get(8)?,
                itl_ms_p50: r.get(9)?,
                itl_ms_p95: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn record_compat(&mut self, results: &[CompatResult]) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        for c in results {
            tx.execute(
                "INSERT OR REPLACE INTO compat (time, host, feature, passed, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![c.time as i64, c.host, c.feature, c.passed, c.detail],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The latest result of each (host, feature).
    pub fn compat_matrix(&self) -> anyhow::Result<Vec<CompatResult>> {
        let mut stmt = self.conn.prepare(
            "SELECT c.time, c.host, c.feature, c.passed, c.detail FROM compat c
             WHERE c.time = (SELECT MAX(time) FROM compat d WHERE d.host = c.host AND d.feature = c.feature)
             ORDER BY c.host, c.feature",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(CompatResult {
                time: r.get::<_, i64>(0)? as u64,
                host: r.get(1)?,
                feature: r.get(2)?,
                passed: r.get(3)?,
                detail: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regression::Better;

    fn run(time: u64, tg: f64) -> Run {
        Run {
            time,
            git_commit: "abc".into(),
            version: "0.1.0".into(),
            host: "rill".into(),
            runtime: "wasmtime 48.0.8".into(),
            cpu: "cpu".into(),
            backend: "component".into(),
            kernel_path: "simd128".into(),
            model: "m".into(),
            quant: "Q4_K_M".into(),
            kind: "single".into(),
            figures: vec![Figure {
                name: "tg64_tok_s".into(),
                value: tg,
                better: Better::Higher,
            }],
        }
    }

    #[test]
    fn a_new_file_gets_every_schema_step_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/metrics.sqlite");
        let mut store = Store::open(&path, DEFAULT_RETENTION).unwrap();
        assert_eq!(store.version().unwrap(), MIGRATIONS.len());
        store.record_run(&run(now(), 10.0)).unwrap();
        drop(store);
        // Reopening applies nothing again and keeps the data.
        let store = Store::open(&path, DEFAULT_RETENTION).unwrap();
        assert_eq!(store.version().unwrap(), MIGRATIONS.len());
        let runs = store.runs().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].figures[0].value, 10.0);
        assert_eq!(runs[0].figures[0].better, Better::Higher);
    }

    #[test]
    fn a_file_from_a_newer_rill_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.sqlite");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let e = Store::open(&path, DEFAULT_RETENTION).err().unwrap();
        assert!(format!("{e:#}").contains("newer than this rill knows"), "{e:#}");
    }

    #[test]
    fn retention_drops_old_rows_and_their_figures_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.sqlite");
        let day = 24 * 3600;
        let mut store = Store::open(&path, DEFAULT_RETENTION).unwrap();
        store.record_run(&run(now() - 100 * day, 1.0)).unwrap();
        store.record_run(&run(now() - 31 * day, 2.0)).unwrap();
        store.record_run(&run(now() - day, 3.0)).unwrap();
        store
            .record_minute(&ServeMinute {
                minute: now() - 100 * day,
                model: "m".into(),
                backend: "component".into(),
                requests: 1,
                ..Default::default()
            })
            .unwrap();
        drop(store);
        // The default keeps 90 days: the 31-day-old run stays.
        let store = Store::open(&path, DEFAULT_RETENTION).unwrap();
        let kept: Vec<f64> = store.runs().unwrap().iter().map(|r| r.figures[0].value).collect();
        assert_eq!(kept, [2.0, 3.0]);
        assert!(store.serve_minutes().unwrap().is_empty());
        let orphans: i64 = store
            .conn
            .query_row(
                "SELECT COUNT(*) FROM figures WHERE run_id NOT IN (SELECT id FROM runs)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0);
        drop(store);
        let store = Store::open(&path, Duration::from_secs(7 * day)).unwrap();
        assert_eq!(store.runs().unwrap().len(), 1);
    }

    #[test]
    fn a_minute_flushed_twice_adds_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("m.sqlite"), DEFAULT_RETENTION).unwrap();
        let m = ServeMinute {
            minute: now() / 60 * 60,
            model: "m".into(),
            backend: "component".into(),
            requests: 2,
            completion_tokens: 10,
            ttft_ms_p50: Some(5.0),
            ..Default::default()
        };
        store.record_minute(&m).unwrap();
        store.record_minute(&m).unwrap();
        let rows = store.serve_minutes().unwrap();
        assert_eq!((rows.len(), rows[0].requests, rows[0].completion_tokens), (1, 4, 20));
    }

    #[test]
    fn the_matrix_holds_each_checks_latest_result() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("m.sqlite"), DEFAULT_RETENTION).unwrap();
        let check = |time, passed| CompatResult {
            time,
            host: "jco".into(),
            feature: "sse".into(),
            passed,
            detail: String::new(),
        };
        store.record_compat(&[check(now() - 10, false)]).unwrap();
        store.record_compat(&[check(now(), true)]).unwrap();
        let matrix = store.compat_matrix().unwrap();
        assert_eq!(matrix.len(), 1);
        assert!(matrix[0].passed);
    }
}
