//! Adaptive batch size: how many generations the engine runs at once, chosen from measured
//! step times so that streams get their tokens within a target inter-token latency.
//!
//! Each step gives every running stream one token, so a step's duration is the streams'
//! inter-token latency; more streams make a step longer and the total rate higher. The
//! controller lets one more stream in when recent steps were within the target and requests
//! are waiting, and one fewer when they go over it. A step up that went over is not tried
//! again for a while, twice as long each time it fails in a row, so the limit settles instead
//! of swinging around the target. Running streams are never stopped: the limit applies to
//! admissions. It aims a little under the target (`AIM`), so that the slower steps, not just
//! the average one, meet it.
//!
//! A step that also reads a prompt chunk is longer by the chunk's work, and the streams that
//! are decoding wait for it too: such steps count towards the limit like any other. While
//! other streams are decoding, the chunk is scaled by aim / step time after each such step
//! (between `MIN_PROMPT_CHUNK` and the engine's default); with no one else waiting for tokens,
//! prompts are read in full chunks. Where even the smallest chunk does not fit, the limit
//! comes down until it does.

use rill_engine::scheduler::DEFAULT_PROMPT_CHUNK;
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
    /// Prompt tokens a step may read, over all generations, while others decode.
    prompt_chunk: usize,
}

/// Weight of the newest step in the running mean.
const NEWEST: f64 = 0.3;
/// Steps at a limit before judging it.
const SETTLE: usize = 3;
/// The first wait after a failed step up, in steps.
const FIRST_BACKOFF: usize = 32;
/// The smallest prompt chunk: however slow a step, a prompt still moves on.
const MIN_PROMPT_CHUNK: usize = 4;
/// The share of the target steps aim at, so that the slower steps meet it too (`rill serve`
/// with 8 clients on the component: p95 inter-token 48–84 ms aiming at 0.8, 93–106 at 0.9).
const AIM: f64 = 0.8;

impl BatchControl {
    /// Aims at `target` inter-token latency with at most `max` streams; `None` runs `max` always.
    pub fn new(target: Option<Duration>, max: usize) -> BatchControl {
        let max = max.max(1);
        let limit = if target.is_some() { 1 } else { max };
        BatchControl {
            target,
            max,
            limit,
            mean: 0.0,
            steps: 0,
            hold: 0,
            backoff: FIRST_BACKOFF,
            probing: false,
            prompt_chunk: DEFAULT_PROMPT_CHUNK,
        }
    }

    /// Prompt tokens the next step may read, over all generations: sized to the target when
    /// some `decoding` stream waits for the step's token, else the engine's full chunk.
    pub fn prompt_chunk(&self, decoding: bool) -> usize {
        if decoding {
            self.prompt_chunk
        } else {
            DEFAULT_PROMPT_CHUNK
        }
    }

    /// Streams that may run at once now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A step of `streams` generations, `reading` of them still reading their prompts, took
    /// `took`; `waiting` requests want to start.
    pub fn observe(&mut self, took: Duration, streams: usize, reading: usize, waiting: usize) {
        let Some(target) = self.target else { return };
        let (t, aim) = (took.as_secs_f64(), AIM * target.as_secs_f64());
        if reading == streams {
            return; // nobody waited for a token: prompts alone are read in full chunks
        }
        if reading > 0 {
            // Scaled by aim / step time: the decoders' share of the step does not scale with the
            // chunk, so this undershoots on the way up (safe) and converges on the aim.
            let scaled = self.prompt_chunk as f64 * aim / t.max(1e-6);
            self.prompt_chunk = (scaled.round() as usize).clamp(MIN_PROMPT_CHUNK, DEFAULT_PROMPT_CHUNK);
        }
        self.mean = if self.steps == 0 {
            t
        } else {
            (1.0 - NEWEST) * self.mean + NEWEST * t
        };
        self.steps += 1;
        self.hold = self.hold.saturating_sub(1);
        if self.steps < SETTLE {
            return;
        }
        let over = self.mean > aim;
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
            control.observe(Duration::from_secs_f64(took / 1e3), streams, 0, waiting);
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
        run(&mut control, 13.0, 8, 100);
        // 10 + 13·n ≤ 80 (the aim: 0.8 of the target) up to n = 5.
        let (over, limits) = run(&mut control, 13.0, 8, 1000);
        let at_5 = limits.iter().filter(|&&l| l == 5).count();
        assert!(
            at_5 >= 950 && over <= 20,
            "{at_5} of 1000 steps at 5, {over} over the target"
        );
        // The machine gets slower: the limit comes down to what fits (n = 2).
        run(&mut control, 30.0, 8, 100);
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

    #[test]
    fn the_prompt_chunk_fits_the_target_while_others_decode() {
        // A step: 10 ms, 14 ms per decoding stream, 0.5 ms per prompt token read.
        let step = |decoding: usize, chunk: usize| {
            Duration::from_secs_f64((10.0 + 14.0 * decoding as f64 + 0.5 * chunk as f64) / 1e3)
        };
        let mut control = BatchControl::new(target(), 8);
        for _ in 0..20 {
            control.observe(step(1, control.prompt_chunk(true)), 2, 1, 0);
        }
        // 10 + 14 + 0.5·c = 80 (the aim) at c = 112.
        assert!(
            (105..=115).contains(&control.prompt_chunk(true)),
            "{}",
            control.prompt_chunk(true)
        );
        // A prompt alone keeps nobody waiting: full chunks, and the shared size is kept.
        control.observe(step(0, control.prompt_chunk(false)), 1, 1, 0);
        assert_eq!(control.prompt_chunk(false), DEFAULT_PROMPT_CHUNK);
        assert!((105..=115).contains(&control.prompt_chunk(true)));
        // However slow the others' steps, a prompt still moves on.
        for _ in 0..10 {
            control.observe(step(20, control.prompt_chunk(true)), 21, 1, 0);
        }
        assert_eq!(control.prompt_chunk(true), MIN_PROMPT_CHUNK);
    }

    #[test]
    fn steps_that_read_prompts_count_towards_the_limit() {
        // Prompts are slow to read (7 ms a token, as in the component), and every other step
        // reads one while the rest decode; requests keep waiting.
        let mut control = BatchControl::new(target(), 16);
        let (mut over, mut four_or_more) = (0, 0);
        for i in 0..2000 {
            let (streams, reading) = (control.limit(), (i % 2 == 0) as usize);
            let chunk = control.prompt_chunk(streams > reading);
            let took = 10.0 + 12.0 * (streams - reading) as f64 + 7.0 * (reading * chunk) as f64;
            // A prompt read alone keeps nobody waiting.
            over += (i >= 200 && streams > reading && took > 100.0) as usize;
            four_or_more += (i >= 200 && streams >= 4) as usize;
            control.observe(Duration::from_secs_f64(took / 1e3), streams, reading, 8);
        }
        // Decode-only steps alone would allow 5 streams (10 + 12·5 = 70 ms); a reading step of
        // 4 or 5 with a small chunk (4 tokens: 10 + 36 + 28 = 74 ms, or 10 + 48 + 28 = 86)
        // stays within the target, so the limit stays there (a chunk of at least 32, 224 ms,
        // brought it down to 1), and no more than 5% of the steps someone waits for go over.
        assert!(over <= 90, "{over} of 1800 steps over the target");
        assert!(four_or_more >= 1620, "{four_or_more} of 1800 steps with 4 or 5 streams");
    }
}
