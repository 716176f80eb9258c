// GELU's tanh form written as the logistic function it is, x / (1 + e^(−2u)) with
// u = √(2/π)·(x + 0.044715·x³), as the CPU path computes it (no cancellation for negative x).
fn gelu(x: f32) -> f32 {
    let u = 0.7978846 * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(clamp(-2.0 * u, -87.0, 88.0)));
}
