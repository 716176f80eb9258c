//! Regression detection: is a figure of this run worse than its baseline?
//!
//! A baseline is the median and the median absolute deviation (MAD) of earlier comparable
//! runs: robust to the odd slow run a shared machine produces. A change is flagged when it goes
//! the wrong way by more than a relative threshold *and* stands out of the baseline's own
//! spread (a robust z-score), so neither a tiny but "significant" drift nor a large swing of a
//! figure that always swings is reported. Figures compared this way should be ratios measured
//! within one run (component / peer, or / a calibration kernel), which machine noise moves
//! much less than bare times.

use serde::{Deserialize, Serialize};

/// Which way a figure improves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// What a figure's earlier runs say: their median, MAD and count.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub median: f64,
    pub mad: f64,
    pub runs: usize,
}

impl Baseline {
    /// The baseline of `history` (at least one value).
    pub fn of(history: &[f64]) -> Option<Baseline> {
        let middle = median(history.to_vec())?;
        let mad = median(history.iter().map(|v| (v - middle).abs()).collect())?;
        Some(Baseline {
            median: middle,
            mad,
            runs: history.len(),
        })
    }
}

/// When a change counts as a regression.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Smallest relative change in the wrong direction that is flagged (0.10: 10%).
    pub min_change: f64,
    /// Smallest robust z-score (the change over 1.4826 × MAD, the normal-equivalent σ).
    pub min_z: f64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            min_change: 0.10,
            min_z: 3.0,
        }
    }
}

/// One figure of a run against its baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub figure: String,
    pub value: f64,
    pub baseline: Baseline,
    /// (value − baseline) / baseline: +0.2 is 20% higher.
    pub change: f64,
    /// How far outside the baseline's spread: |value − median| / (1.4826 × MAD).
    pub z: f64,
    /// The probability that noise of the baseline's spread moves a figure this far or less
    /// (two-sided, normal approximation): 0.997 at z = 3.
    pub confidence: f64,
    pub regression: bool,
}

/// A spread below this fraction of the median is treated as this fraction: a baseline whose
/// runs happened to agree exactly must not make every later wobble infinitely significant.
const MIN_RELATIVE_SPREAD: f64 = 0.01;

pub fn compare(figure: &str, value: f64, baseline: Baseline, better: Better, t: Thresholds) -> Verdict {
    let change = (value - baseline.median) / baseline.median;
    let sigma = (1.4826 * baseline.mad).max(MIN_RELATIVE_SPREAD * baseline.median.abs());
    let z = (value - baseline.median).abs() / sigma;
    let worse = match better {
        Better::Higher => -change,
        Better::Lower => change,
    };
    Verdict {
        figure: figure.to_string(),
        value,
        baseline,
        change,
        z,
        confidence: erf(z / std::f64::consts::SQRT_2),
        regression: worse > t.min_change && z > t.min_z,
    }
}

/// The median of the finite values, if there are any.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The error function (Abramowitz and Stegun 7.1.26, |error| < 1.5e-7).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    (1.0 - poly * (-x * x).exp()).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A noisy history around `level`: ±`noise` relative, uniform (a seeded generator).
    fn history(level: f64, noise: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| level * (1.0 + rng.random_range(-noise..noise)))
            .collect()
    }

    #[test]
    fn a_planted_20_percent_drop_is_flagged_with_its_size() {
        for seed in 0..50 {
            let baseline = Baseline::of(&history(0.5, 0.05, 20, seed)).unwrap();
            let v = compare("tg64_vs_peer", 0.4, baseline, Better::Higher, Thresholds::default());
            assert!(v.regression, "seed {seed}: {v:?}");
            assert!((v.change + 0.2).abs() < 0.04, "{v:?}");
            assert!(v.confidence > 0.997, "{v:?}");
        }
    }

    #[test]
    fn noise_within_the_threshold_is_not_flagged() {
        let mut flagged = 0;
        for seed in 0..200 {
            let runs = history(0.5, 0.05, 21, seed);
            let baseline = Baseline::of(&runs[..20]).unwrap();
            flagged += compare(
                "tg64_vs_peer",
                runs[20],
                baseline,
                Better::Higher,
                Thresholds::default(),
            )
            .regression as usize;
        }
        assert_eq!(flagged, 0);
    }

    #[test]
    fn direction_matters() {
        let baseline = Baseline::of(&[100.0, 101.0, 99.0, 100.5, 99.5]).unwrap();
        // A 20% faster first token is an improvement, 20% slower a regression.
        assert!(!compare("ttft_ms", 80.0, baseline, Better::Lower, Thresholds::default()).regression);
        assert!(compare("ttft_ms", 120.0, baseline, Better::Lower, Thresholds::default()).regression);
        // The same for a rate the other way round.
        assert!(!compare("pp128_tok_s", 120.0, baseline, Better::Higher, Thresholds::default()).regression);
        assert!(compare("pp128_tok_s", 80.0, baseline, Better::Higher, Thresholds::default()).regression);
    }

    #[test]
    fn a_figure_that_always_swings_is_not_flagged_for_swinging() {
        // ±40% noise: a 20% drop is within what this figure does anyway.
        let baseline = Baseline::of(&history(0.5, 0.4, 20, 7)).unwrap();
        let v = compare("ttft_ms", 0.4, baseline, Better::Higher, Thresholds::default());
        assert!(!v.regression && v.z < 3.0, "{v:?}");
    }

    #[test]
    fn an_exactly_repeating_history_still_has_a_spread() {
        let baseline = Baseline::of(&[2.0; 5]).unwrap();
        assert_eq!(baseline.mad, 0.0);
        let small = compare("x", 1.99, baseline, Better::Higher, Thresholds::default());
        assert!(small.z.is_finite() && !small.regression);
        assert!(compare("x", 1.5, baseline, Better::Higher, Thresholds::default()).regression);
    }

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.5204999),
            (1.0, 0.8427008),
            (2.0, 0.9953223),
            (-1.0, -0.8427008),
        ] {
            assert!((erf(x) - want).abs() < 1e-6, "erf({x}) = {} not {want}", erf(x));
        }
    }
}
