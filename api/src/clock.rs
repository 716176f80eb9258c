//! A request's clock: when it arrived, when the engine took it, when each token left; and the
//! per-request telemetry (`timings`) made from it and the engine's own figures.

use crate::response::{rate, Latency, Timings};
use rill_engine::engine::{Timings as EngineTimings, Usage};
use std::time::{Duration, Instant};

pub struct TokenClock {
    arrived: Instant,
    started: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    gaps_ms: Vec<f64>,
}

impl TokenClock {
    /// A request that arrived at `arrived` and that the engine takes now.
    pub fn started(arrived: Instant) -> TokenClock {
        TokenClock {
            arrived,
            started: Instant::now(),
            first: None,
            last: None,
            gaps_ms: Vec::new(),
        }
    }

    /// A token left at `now`: the gap since the one before (none for the first).
    pub fn token(&mut self, now: Instant) -> Option<Duration> {
        let gap = self.last.map(|prev| now - prev);
        match gap {
            Some(g) => self.gaps_ms.push(g.as_secs_f64() * 1e3),
            None => self.first = Some(now),
        }
        self.last = Some(now);
        gap
    }

    /// From arrival to the first token, once there is one.
    pub fn time_to_first_token(&self) -> Option<Duration> {
        self.first.map(|f| f - self.arrived)
    }

    /// The request's `timings`, from this clock and what the engine measured.
    pub fn timings(&self, usage: Usage, engine: &EngineTimings) -> Timings {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Timings {
            queue_ms: ms(self.started - self.arrived),
            prompt_ms: ms(engine.prompt),
            // Tokens computed, not those the prefix cache supplied.
            prompt_tokens_per_second: rate(usage.prompt_tokens - usage.cached_tokens, ms(engine.prompt)),
            time_to_first_token_ms: self.time_to_first_token().map_or(0.0, ms),
            decode_ms: ms(engine.decode),
            decode_tokens_per_second: rate(usage.completion_tokens.saturating_sub(1), ms(engine.decode)),
            inter_token_ms: Latency::of(&self.gaps_ms),
        }
    }
}
