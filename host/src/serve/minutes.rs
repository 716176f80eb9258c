//! `rill serve`'s request telemetry, summed per minute: requests, errors, tokens, and
//! time-to-first-token and inter-token percentiles. The handlers and the engine thread add to
//! the current minute; a task hands each finished minute to a [`MinuteSink`] (the lab's
//! metrics store, which the dashboard's serve chart reads).

use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One minute of `rill serve`'s requests.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServeMinute {
    /// Unix time of the minute's start.
    pub minute: u64,
    pub model: String,
    pub backend: String,
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub ttft_ms_p50: Option<f64>,
    pub ttft_ms_p95: Option<f64>,
    pub itl_ms_p50: Option<f64>,
    pub itl_ms_p95: Option<f64>,
}

/// Where finished minutes go. Called on a blocking thread, once a minute with traffic.
pub trait MinuteSink: Send + Sync {
    fn record(&self, minute: &ServeMinute) -> anyhow::Result<()>;
}

#[derive(Default)]
pub struct Minutes {
    current: Mutex<Window>,
}

/// What the current minute has seen so far.
#[derive(Default)]
struct Window {
    requests: u64,
    errors: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    ttft_ms: Vec<f64>,
    itl_ms: Vec<f64>,
}

impl Minutes {
    fn with(&self, f: impl FnOnce(&mut Window)) {
        f(&mut self.current.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn request(&self, status: u16) {
        self.with(|w| {
            w.requests += 1;
            w.errors += u64::from(status >= 400);
        });
    }

    pub fn tokens(&self, prompt: u64, completion: u64) {
        self.with(|w| {
            w.prompt_tokens += prompt;
            w.completion_tokens += completion;
        });
    }

    pub fn first_token(&self, after: Duration) {
        self.with(|w| w.ttft_ms.push(after.as_secs_f64() * 1e3));
    }

    pub fn gap(&self, gap: Duration) {
        self.with(|w| w.itl_ms.push(gap.as_secs_f64() * 1e3));
    }

    /// The minute so far as a row (None if nothing happened), starting a new one.
    fn take(&self, minute: u64, model: &str, backend: &str) -> Option<ServeMinute> {
        let w = std::mem::take(&mut *self.current.lock().unwrap_or_else(|p| p.into_inner()));
        (w.requests > 0 || w.completion_tokens > 0).then(|| ServeMinute {
            minute,
            model: model.to_string(),
            backend: backend.to_string(),
            requests: w.requests,
            errors: w.errors,
            prompt_tokens: w.prompt_tokens,
            completion_tokens: w.completion_tokens,
            ttft_ms_p50: percentile(&w.ttft_ms, 0.50),
            ttft_ms_p95: percentile(&w.ttft_ms, 0.95),
            itl_ms_p50: percentile(&w.itl_ms, 0.50),
            itl_ms_p95: percentile(&w.itl_ms, 0.95),
        })
    }
}

fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    (!s.is_empty()).then(|| s[((s.len() - 1) as f64 * q).round() as usize])
}

/// Hands each minute's row to `sink` at the minute's end, for the life of the server. A sink
/// that fails is reported once per failure and costs nothing else.
pub(super) async fn record(minutes: Arc<Minutes>, sink: Arc<dyn MinuteSink>, model: String, backend: String) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        // The row is filed under the minute that just ended.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let minute = now.saturating_sub(60) / 60 * 60;
        let Some(row) = minutes.take(minute, &model, &backend) else {
            continue;
        };
        let sink = sink.clone();
        let written = tokio::task::spawn_blocking(move || sink.record(&row)).await;
        if let Ok(Err(e)) = written {
            eprintln!("rill serve: could not record the last minute's telemetry: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_sums_its_requests_and_takes_percentiles() {
        let m = Minutes::default();
        assert!(m.take(0, "m", "b").is_none());
        for status in [200, 200, 429, 200] {
            m.request(status);
        }
        m.tokens(10, 5);
        m.tokens(3, 7);
        for ms in 1..=100 {
            m.first_token(Duration::from_millis(ms));
        }
        let row = m.take(60, "m", "b").unwrap();
        assert_eq!(
            (row.requests, row.errors, row.prompt_tokens, row.completion_tokens),
            (4, 1, 13, 12)
        );
        assert_eq!(row.ttft_ms_p50.map(f64::round), Some(51.0));
        assert_eq!(row.ttft_ms_p95.map(f64::round), Some(95.0));
        assert_eq!(row.itl_ms_p50, None);
        // Taking starts a new minute.
        assert!(m.take(120, "m", "b").is_none());
    }
}
