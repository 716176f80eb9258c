//! A fixed workload whose speed says how fast this machine is *right now*: benchmark figures
//! divided by it (`…_vs_calibration`) move much less with a shared machine's load and clock
//! than bare times, so they can be compared across runs and machines of a kind.
//!
//! The workload is the shape of the engine's inner loop: multiply-adds over a 256 KiB buffer
//! (L2-resident on current x86), in native code, single-threaded.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// f32 values in the buffer (256 KiB).
const LEN: usize = 1 << 16;
/// How long one measurement runs.
const SPAN: Duration = Duration::from_millis(40);

/// Millions of multiply-adds per second, measured over about 40 ms.
pub fn measure() -> f64 {
    let a: Vec<f32> = (0..LEN).map(|i| (i % 17) as f32 * 0.25).collect();
    let b: Vec<f32> = (0..LEN).map(|i| (i % 13) as f32 * 0.5).collect();
    let start = Instant::now();
    let mut passes = 0u64;
    while start.elapsed() < SPAN {
        black_box(dot(black_box(&a), black_box(&b)));
        passes += 1;
    }
    (passes * LEN as u64) as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// Eight independent sums, as the kernels keep several accumulators in flight.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_dot_is_right_and_the_rate_positive() {
        let a = vec![1.5f32; 64];
        let b = vec![2.0f32; 64];
        assert_eq!(super::dot(&a, &b), 192.0);
        assert!(super::measure() > 0.0);
    }
}
