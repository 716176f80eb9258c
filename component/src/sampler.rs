//! Choosing the next token from logits, in llama.cpp's order: logit biases, repetition
//! penalties, top-k, top-p, min-p, temperature, then a draw from the seeded RNG (or the argmax
//! when greedy).

use crate::tokenizer::TokenId;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches `top_p`; 1 keeps all.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` × the most likely one; 0 keeps all.
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recently seen tokens; 1 is off.
    pub repeat_penalty: f32,
    /// Subtract `frequency_penalty` × count and `presence_penalty` once for each seen token.
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// How many of the latest tokens the penalties look at.
    pub penalty_last_n: usize,
    pub seed: u64,
    /// Added to these tokens' logits before anything else (OpenAI's `logit_bias`).
    pub logit_bias: LogitBias,
}

/// Most a logit bias may add or take away: OpenAI's range, where ±100 bans or forces a token.
pub const MAX_LOGIT_BIAS: f32 = 100.0;

/// Token id → bias added to its logit, in id order. Written as a map from token ids to biases,
/// with the ids as strings, as JSON and TOML keys must be: `{"818": -100}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogitBias(pub Vec<(TokenId, f32)>);

impl<'de> Deserialize<'de> for LogitBias {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LogitBias, D::Error> {
        BTreeMap::<String, f32>::deserialize(d)?
            .into_iter()
            .map(|(key, bias)| match key.parse::<TokenId>() {
                Ok(id) => Ok((id, bias)),
                Err(_) => Err(serde::de::Error::custom(format!("{key:?} is not a token id"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(LogitBias::from_pairs)
    }
}

impl Serialize for LogitBias {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(id, bias)| (id.to_string(), bias)))
    }
}

impl LogitBias {
    /// The biases of `pairs` in id order; of several for one id, the last.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (TokenId, f32)>) -> LogitBias {
        LogitBias(pairs.into_iter().collect::<BTreeMap<_, _>>().into_iter().collect())
    }

    /// The first token id at or past `vocab_size`, if any.
    pub fn unknown_token(&self, vocab_size: usize) -> Option<TokenId> {
        self.0.iter().map(|&(id, _)| id).find(|&id| id as usize >= vocab_size)
    }
}

impl Default for SamplingParams {
    /// llama.cpp's defaults.
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
            logit_bias: LogitBias::default(),
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Checks every value's range; the error names the parameter.
    pub fn validate(&self) -> Result<(), OutOfRange> {
        let check = |ok: bool, name: &'static str, value: f32, allowed: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(OutOfRange { name, value, allowed })
            }
        };
        let t = self.temperature;
        check(t.is_finite() && t >= 0.0, "temperature", t, "a finite number ≥ 0")?;
        check((0.0..=1.0).contains(&self.top_p), "top_p", self.top_p, "0..=1")?;
        check((0.0..=1.0).contains(&self.min_p), "min_p", self.min_p, "0..=1")?;
        check(
            self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0,
            "repeat_penalty",
            self.repeat_penalty,
            "> 0",
        )?;
        check(
            (-2.0..=2.0).contains(&self.frequency_penalty),
            "frequency_penalty",
            self.frequency_penalty,
            "-2..=2",
        )?;
        check(
            (-2.0..=2.0).contains(&self.presence_penalty),
            "presence_penalty",
            self.presence_penalty,
            "-2..=2",
        )?;
        self.logit_bias.0.iter().try_for_each(|&(_, bias)| {
            check(
                (-MAX_LOGIT_BIAS..=MAX_LOGIT_BIAS).contains(&bias),
                "logit_bias",
                bias,
                "-100..=100",
            )
        })
    }
}

/// A sampling parameter outside its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name} = {value} is out of range: it must be {allowed}")]
pub struct OutOfRange {
    /// The parameter's name, as in [`SamplingParams`].
    pub name: &'static str,
    pub value: f32,
    pub allowed: &'static str,
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Tokens seen so far (prompt and output), for the penalties.
    history: Vec<TokenId>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        Sampler {
            rng: ChaCha8Rng::seed_from_u64(params.seed),
            params,
            history: Vec::new(),
        }
    }

    /// Records a token (prompt or generated) for the penalties.
    pub fn accept(&mut self, id: TokenId) {
        self.history.push(id);
    }

    /// Picks the next token from `logits` (modified in place by the penalties).
    pub fn sample(&mut self, logits: &mut [f32]) -> TokenId {
        for &(id, bias) in &self.params.logit_bias.0 {
            if let Some(l) = logits.get_mut(id as usize) {
                *l += bias;
            }
        }
        self.apply_penalties(logits);
        if self.params.temperature <= 0.0 {
            return argmax(logits);
        }
        let top_k = match self.params.top_k {
            0 => logits.len(),
            k => k.min(logits.len()),
        };
        self.choose(most_likely(logits, top_k))
    }

    /// Whether the `top` most likely tokens of the model's logits decide this sampler's choice,
    /// so that [`Sampler::sample_top`] can pick from them: no bias or penalty changes the
    /// logits, and it is greedy or keeps at most `top` tokens.
    pub fn needs_only_top(&self, top: usize) -> bool {
        let p = &self.params;
        p.logit_bias.0.is_empty() && !self.penalises() && (p.temperature <= 0.0 || (1..=top).contains(&p.top_k))
    }

    /// Picks the next token from the logits' most likely tokens, most likely first (ties: the
    /// lower id), as [`Sampler::sample`] would from the whole row; see
    /// [`Sampler::needs_only_top`].
    pub fn sample_top(&mut self, candidates: &[(TokenId, f32)]) -> TokenId {
        if self.params.temperature <= 0.0 {
            return candidates[0].0;
        }
        let top_k = self.params.top_k.min(candidates.len());
        self.choose(candidates[..top_k].to_vec())
    }

    /// Top-p, min-p and temperature over the top-k candidates (most likely first), then a draw.
    fn choose(&mut self, mut cands: Vec<(TokenId, f32)>) -> TokenId {
        let p = &self.params;
        let probs = softmax(&cands, 1.0);
        // Top-p: the shortest prefix reaching top_p.
        let mut cum = 0.0;
        let keep = probs.iter().position(|&q| {
            cum += q;
            cum >= p.top_p
        });
        cands.truncate(keep.map_or(cands.len(), |i| i + 1));
        // Min-p, relative to the most likely token.
        if p.min_p > 0.0 {
            let probs = softmax(&cands, 1.0);
            let floor = p.min_p * probs[0];
            let kept = probs.iter().take_while(|&&q| q >= floor).count().max(1);
            cands.truncate(kept);
        }
        let probs = softmax(&cands, p.temperature);
        let r: f32 = (self.rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
        let mut cum = 0.0;
        for (c, q) in cands.iter().zip(&probs) {
            cum += q;
            if r < cum {
                return c.0;
            }
        }
        cands.last().expect("at least one candidate").0
    }

    fn penalises(&self) -> bool {
        let p = &self.params;
        p.repeat_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0
    }

    fn apply_penalties(&self, logits: &mut [f32]) {
        if !self.penalises() {
            return;
        }
        let p = &self.params;
        let recent = &self.history[self.history.len().saturating_sub(p.penalty_last_n)..];
        let mut counts: HashMap<TokenId, u32> = HashMap::new();
        for &t in recent {
            *counts.entry(t).or_default() += 1;
        }
        for (&t, &n) in &counts {
            let Some(l) = logits.get_mut(t as usize) else { continue };
            *l = if *l > 0.0 {
                *l / p.repeat_penalty
            } else {
                *l * p.repeat_penalty
            };
            *l -= n as f32 * p.frequency_penalty + p.presence_penalty;
        }
    }
}

/// Orders candidates most likely first, ties by lower token id: a total order, so the top `k`
/// are the same whichever way they are found.
fn more_likely(a: &(TokenId, f32), b: &(TokenId, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The `k` most likely tokens (k ≥ 1), most likely first. One pass over the logits keeps at most
/// 2k candidates: when the buffer fills, it is cut to its best k and only logits above the k-th
/// are taken from then on. Copying and selecting over all of Gemma 3's 262,144 logits took
/// 2.5% of the component's decode time, and so did a scan that tested logit by logit; so once
/// there is a floor, eight logits at a time are compared with it without a branch each (almost
/// no group has one above it), and only a group that has is offered logit by logit.
fn most_likely(logits: &[f32], k: usize) -> Vec<(TokenId, f32)> {
    let mut best = TopK {
        k,
        cands: Vec::with_capacity(2 * k),
        floor: None,
    };
    let groups = logits.chunks_exact(8);
    let tail_start = logits.len() - groups.remainder().len();
    for (g, group) in groups.enumerate() {
        let group: &[f32; 8] = group.try_into().expect("chunks_exact(8)");
        if let Some(f) = best.floor {
            if !group.iter().fold(false, |above, &l| above | (l > f)) {
                continue;
            }
        }
        for (j, &l) in group.iter().enumerate() {
            best.offer(8 * g + j, l);
        }
    }
    for (i, &l) in logits.iter().enumerate().skip(tail_start) {
        best.offer(i, l);
    }
    let mut cands = best.cands;
    cands.sort_unstable_by(more_likely);
    cands.truncate(k);
    cands
}

/// The candidates of `most_likely` so far.
struct TopK {
    k: usize,
    cands: Vec<(TokenId, f32)>,
    floor: Option<f32>, // the k-th best logit so far, once there were 2k candidates
}

impl TopK {
    fn offer(&mut self, i: usize, l: f32) {
        // A logit equal to the floor comes after it in id order too, so it cannot be in the top k.
        if self.floor.is_none_or(|f| l > f) {
            self.cands.push((i as TokenId, l));
            if self.cands.len() == 2 * self.k {
                self.cands.select_nth_unstable_by(self.k - 1, more_likely);
                self.cands.truncate(self.k);
                self.floor = Some(self.cands[self.k - 1].1);
            }
        }
    }
}

/// The first position of the largest logit (NaN never counts as largest).
///
/// Two passes that vectorise, not one that carries the best index from logit to logit (a chain
/// through a load and a select, ~10 cycles a logit in wasmtime: 2% of the component's greedy
/// decode over Gemma 3's 262,144 logits): the largest value, eight lanes at a time, by
/// comparison (`f32::max` is a libm call in wasm), then where it first is.
pub fn argmax(logits: &[f32]) -> TokenId {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = logits.chunks_exact(8);
    for &l in chunks.remainder() {
        if l > lanes[0] {
            lanes[0] = l;
        }
    }
    for chunk in chunks {
        for (m, &l) in lanes.iter_mut().zip(chunk) {
            if l > *m {
                *m = l;
            }
        }
    }
    let max = lanes
        .into_iter()
        .fold(f32::NEG_INFINITY, |m, l| if l > m { l } else { m });
    logits.iter().position(|&l| l == max).unwrap_or(0) as TokenId
}

/// Probabilities of the candidates' logits divided by `temperature`.
fn softmax(cands: &[(TokenId, f32)], temperature: f32) -> Vec<f32> {
    let max = cands.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<f32> = cands.iter().map(|c| ((c.1 - max) / temperature).exp()).collect();
    let sum: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|q| *q /= sum);
    probs
}

/// Natural log of the probability of `id` under the softmax of `logits`.
pub fn logprob(logits: &[f32], id: TokenId) -> f32 {
    logits[id as usize] - log_sum_exp(logits)
}

/// The `n` most likely tokens under the softmax of `logits`, most likely first, with their
/// log-probabilities.
pub fn top_logprobs(logits: &[f32], n: usize) -> Vec<(TokenId, f32)> {
    let n = n.min(logits.len());
    if n == 0 {
        return Vec::new();
    }
    let norm = log_sum_exp(logits);
    most_likely(logits, n)
        .into_iter()
        .map(|(id, l)| (id, l - norm))
        .collect()
}

/// ln Σ exp(l), computed stably.
fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        (0..100).map(|i| (i as f32 * 0.37).sin() * 5.0).collect()
    }

    #[test]
    fn argmax_is_the_first_largest() {
        let mut l = vec![0.5f32; 21]; // two chunks of eight and five left over
        assert_eq!(argmax(&l), 0);
        l[3] = f32::NAN;
        l[19] = 2.0; // in the remainder
        assert_eq!(argmax(&l), 19);
        l[9] = 2.0; // a tie: the first wins
        assert_eq!(argmax(&l), 9);
        l[16] = 3.0;
        assert_eq!(argmax(&l), 16);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), 0);
    }

    #[test]
    fn greedy_is_argmax() {
        let l = logits();
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&mut l.clone()), argmax(&l));
    }

    #[test]
    fn same_seed_same_tokens_and_different_seed_differs() {
        let run = |seed| {
            let mut s = Sampler::new(SamplingParams {
                temperature: 1.5,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                seed,
                ..Default::default()
            });
            (0..50).map(|_| s.sample(&mut logits())).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    /// From the most likely tokens alone, the same draws as from the whole row; and only where
    /// nothing but those tokens can decide.
    #[test]
    fn sampling_from_the_top_candidates_equals_sampling_the_row() {
        let l = logits();
        let candidates = most_likely(&l, 16);
        for (temperature, top_k, top_p, min_p) in [(0.0, 0, 1.0, 0.0), (0.8, 16, 0.9, 0.05), (1.5, 5, 1.0, 0.0)] {
            let params = SamplingParams {
                temperature,
                top_k,
                top_p,
                min_p,
                seed: 11,
                ..Default::default()
            };
            let (mut row, mut top) = (Sampler::new(params.clone()), Sampler::new(params));
            assert!(top.needs_only_top(16));
            for _ in 0..100 {
                assert_eq!(top.sample_top(&candidates), row.sample(&mut l.clone()));
            }
        }
        let needs_row = |params: SamplingParams| !Sampler::new(params).needs_only_top(16);
        assert!(needs_row(SamplingParams {
            top_k: 0,
            ..Default::default()
        }));
        assert!(needs_row(SamplingParams {
            top_k: 17,
            ..Default::default()
        }));
        assert!(needs_row(SamplingParams {
            repeat_penalty: 1.1,
            ..SamplingParams::greedy()
        }));
        assert!(needs_row(SamplingParams {
            logit_bias: LogitBias::from_pairs([(3, 1.0)]),
            ..SamplingParams::greedy()
        }));
    }

    #[test]
    fn top_k_one_is_greedy_and_top_k_limits_choices() {
        let l = logits();
        let mut s = Sampler::new(SamplingParams {
            temperature: 5.0,
            top_k: 1,
            ..Default::default()
        });
        assert_eq!(s.sample(&mut l.clone()), argmax(&l));
        let mut sorted: Vec<u32> = (0..100).collect();
        sorted.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]));
        let mut s = Sampler::new(SamplingParams {
            temperature: 100.0,
            top_k: 3,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        });
        for _ in 0..200 {
            assert!(sorted[..3].contains(&s.sample(&mut l.clone())));
        }
    }

    #[test]
    fn min_p_and_top_p_cut_the_tail() {
        let mut l = vec![-100.0; 10];
        l[3] = 10.0;
        l[4] = 9.9;
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.5,
            ..Default::default()
        });
        for _ in 0..100 {
            assert!([3, 4].contains(&s.sample(&mut l.clone())));
        }
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.1,
            min_p: 0.0,
            ..Default::default()
        });
        for _ in 0..100 {
            assert_eq!(s.sample(&mut l.clone()), 3);
        }
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let mut l = vec![0.0; 4];
        l[1] = 2.0;
        l[2] = 1.9;
        let mut s = Sampler::new(SamplingParams {
            repeat_penalty: 1.5,
            ..SamplingParams::greedy()
        });
        s.accept(1);
        assert_eq!(s.sample(&mut l.clone()), 2);
        let mut s = Sampler::new(SamplingParams {
            presence_penalty: 0.5,
            ..SamplingParams::greedy()
        });
        s.accept(1);
        assert_eq!(s.sample(&mut l), 2);
    }

    #[test]
    fn logit_bias_comes_before_everything_else() {
        let mut l = vec![0.0; 4];
        l[1] = 2.0;
        l[2] = 1.9;
        // -100 bans the most likely token, even greedily; +5 lifts the least likely past both.
        let biased = |bias: &[(TokenId, f32)]| {
            Sampler::new(SamplingParams {
                logit_bias: LogitBias(bias.to_vec()),
                ..SamplingParams::greedy()
            })
            .sample(&mut l.clone())
        };
        assert_eq!(biased(&[]), 1);
        assert_eq!(biased(&[(1, -100.0)]), 2);
        assert_eq!(biased(&[(3, 5.0)]), 3);
        // An id past the logits is left alone here; the engine refuses it before sampling.
        assert_eq!(biased(&[(9, 5.0)]), 1);
        assert_eq!(LogitBias(vec![(3, 1.0), (9, 1.0)]).unknown_token(4), Some(9));
    }

    #[test]
    fn logit_bias_is_a_map_of_token_ids() {
        let b: LogitBias = serde_json::from_str(r#"{"818": -100, "2": 5.5}"#).unwrap();
        assert_eq!(b, LogitBias(vec![(2, 5.5), (818, -100.0)]));
        assert_eq!(serde_json::to_string(&b).unwrap(), r#"{"2":5.5,"818":-100.0}"#);
        let e = serde_json::from_str::<LogitBias>(r#"{"hello": 1}"#).unwrap_err();
        assert!(e.to_string().contains(r#""hello" is not a token id"#), "{e}");
        assert!(serde_json::from_str::<LogitBias>(r#"{"-1": 1}"#).is_err());
    }

    #[test]
    fn params_are_range_checked() {
        let bias = |b| SamplingParams {
            logit_bias: LogitBias(vec![(5, b)]),
            ..Default::default()
        };
        assert_eq!(bias(100.5).validate().unwrap_err().name, "logit_bias");
        assert_eq!(bias(f32::NAN).validate().unwrap_err().name, "logit_bias");
        assert!(bias(-100.0).validate().is_ok());
        assert_eq!(
            SamplingParams {
                temperature: -1.0,
                ..Default::default()
            }
            .validate()
            .unwrap_err()
            .name,
            "temperature"
        );
        assert_eq!(
            SamplingParams {
                top_p: 1.5,
                ..Default::default()
            }
            .validate()
            .unwrap_err()
            .name,
            "top_p"
        );
        assert!(SamplingParams::default().validate().is_ok());
    }

    #[test]
    fn most_likely_is_the_head_of_the_full_sort() {
        // Many ties (eight distinct values), so the id order decides the cut; a length that is not
        // a multiple of the eight logits compared at a time.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let logits: Vec<f32> = (0..1003).map(|_| (rng.next_u32() % 8) as f32 - 3.5).collect();
        let mut sorted: Vec<(TokenId, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as TokenId, l)).collect();
        sorted.sort_by(more_likely);
        for k in [1, 2, 3, 40, 126, 999, 1003] {
            assert_eq!(most_likely(&logits, k), sorted[..k], "k = {k}");
        }
    }

    #[test]
    fn top_logprobs_are_the_largest_in_order() {
        let l = [0.0f32, 3.0, 1.0, 3.0, -2.0];
        let top = top_logprobs(&l, 3);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 3, 2]);
        assert!((top[0].1 - logprob(&l, 1)).abs() < 1e-6 && (top[2].1 - logprob(&l, 2)).abs() < 1e-6);
        assert!(top_logprobs(&l, 0).is_empty());
        assert_eq!(top_logprobs(&l, 9).len(), 5);
    }

    #[test]
    fn logprob_is_log_softmax() {
        let l = [0.0f32, (3.0f32).ln()];
        assert!((logprob(&l, 1) - 0.75f32.ln()).abs() < 1e-6);
    }
}
