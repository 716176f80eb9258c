//! Adaptive batch size: how many generations the engine runs at once, chosen from measured
//! step times so that streams get their tokens within a target inter-token latency.
//!
//! Each step gives every running stream one token, so a step's duration is the streams'
//! inter-token latency; more streams make a step longer and the total rate higher. The
//! controller lets one more stream in when recent steps were within the target and requests
//! are waiting, and one fewer when they go over it. A step up that went over is not tried
//! again for a while, twice as long each time it fails in a row, so the limit settles instead
//! of swinging around the target. Running streams are never stopped: the limit applies to
//! admissions.

use std::time::Duration;

pub struct BatchControl {
    target: Option<Duration>,
    max: usize,
    limit: usize,
    /// Mean of the step times (seconds, exponentially weighted) since the limit last changed,
    /// and how many steps it covers.
    mean: f64,
    steps: usize,
    /// Steps to wait before trying a larger limit again, and what that wait is now.
    hold: usize,
    backoff: usize,
    /// The last change was a step up (so a step down now means the probe failed).
    probing: bool,
}

/// Weight of the newest step in the running mean.
const NEWEST: f64 = 0.3;
/// Steps at a limit before judging it.
const SETTLE: usize = 3;
/// The first wait after a failed step up, in steps.
const FIRST_BACKOFF: usize = 32;

impl BatchControl {
    /// Aims at `target` inter-token latency with at most `max` streams; `None` runs `max` always.
    pub fn new(target: Option<Duration>, max: usize) -> BatchControl {
        let max = max.max(1);
        let limit = if target.is_some() { 1 } else { max };
        BatchControl { target, max, limit, mean: 0.0, steps: 0, hold: 0, backoff: FIRST_BACKOFF, probing: false }
    }

    /// Streams that may run at once now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A step of `streams` generations took `took`; `waiting` requests want to start.
    pub fn observe(&mut self, took: Duration, streams: usize, waiting: usize) {
        let Some(target) = self.target else { return };
        if streams == 0 {
            return;
        }
        let t = took.as_secs_f64();
        self.mean = if self.steps == 0 { t } else { (1.0 - NEWEST) * self.mean + NEWEST * t };
        self.steps += 1;
        self.hold = self.hold.saturating_sub(1);
        if self.steps < SETTLE {
            return;
        }
        let over = self.mean > target.as_secs_f64();
        if over && self.limit > 1 {
            if self.probing {
                self.hold = self.backoff;
                self.backoff *= 2;
            }
            self.change(self.limit - 1, false);
        } else if !over {
            if self.probing {
                // The step up held: later ones start with a short wait again.
                self.probing = false;
                self.backoff = FIRST_BACKOFF;
            }
            if waiting > 0 && streams >= self.limit && self.limit < self.max && self.hold == 0 {
                self.change(self.limit + 1, true);
            }
        }
    }

    fn change(&mut self, limit: usize, up: bool) {
        self.limit = limit;
        self.steps = 0;
        self.probing = up;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `steps` steps on a machine where a step costs 10 ms plus `per_stream_ms` per
    /// stream; returns how many went over the 100 ms target and the limits seen.
    fn run(control: &mut BatchControl, per_stream_ms: f64, waiting: usize, steps: usize) -> (usize, Vec<usize>) {
        let (mut over, mut limits) = (0, Vec::new());
        for _ in 0..steps {
            let streams = control.limit();
            let took = 10.0 + per_stream_ms * streams as f64;
            over += (took > 100.0) as usize;
            control.observe(Duration::from_secs_f64(took / 1e3), streams, waiting);
            limits.push(control.limit());
        }
        (over, limits)
    }

    fn target() -> Option<Duration> {
        Some(Duration::from_millis(100))
    }

    #[test]
    fn the_limit_settles_where_steps_meet_the_target() {
        let mut control = BatchControl::new(target(), 16);
        run(&mut control, 14.0, 8, 100);
        // 10 + 14·n ≤ 100 up to n = 6.
        let (over, limits) = run(&mut control, 14.0, 8, 1000);
        let at_6 = limits.iter().filter(|&&l| l == 6).count();
        assert!(at_6 >= 950 && over <= 20, "{at_6} of 1000 steps at 6, {over} over the target");
        // The machine gets slower: the limit comes down to what fits (n = 2).
        run(&mut control, 40.0, 8, 100);
        assert_eq!(control.limit(), 2);
    }

    #[test]
    fn it_grows_only_when_requests_wait_and_never_past_the_maximum() {
        let mut control = BatchControl::new(target(), 3);
        run(&mut control, 1.0, 0, 50);
        assert_eq!(control.limit(), 1, "nothing waits: no reason to grow");
        run(&mut control, 1.0, 5, 50);
        assert_eq!(control.limit(), 3);
        assert_eq!(BatchControl::new(None, 8).limit(), 8);
    }
}
