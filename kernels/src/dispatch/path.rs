//! Which kernels this machine runs: CPU feature detection, done once, into a [`KernelPath`]
//! that proves the features its kernels need.

use std::fmt;

/// A set of kernels the running machine can execute.
///
/// Only [`KernelPath::best`] and [`KernelPath::available`] make one, so holding an AVX2 path
/// proves the CPU has AVX2, FMA and F16C, and an AVX-512 VNNI path that it also has
/// AVX-512F/VL/BW and VNNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelPath(pub(super) Path);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Path {
    Scalar,
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl KernelPath {
    pub const SCALAR: KernelPath = KernelPath(Path::Scalar);

    /// Every path this machine runs, scalar first.
    pub fn available() -> Vec<KernelPath> {
        let mut paths = vec![Self::SCALAR];
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        paths.push(KernelPath(Path::Simd128));
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            paths.push(KernelPath(Path::Avx2));
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
            {
                paths.push(KernelPath(Path::Avx512Vnni));
            }
        }
        paths
    }

    /// The fastest path this machine runs.
    pub fn best() -> KernelPath {
        *Self::available().last().expect("scalar is always available")
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            Path::Scalar => "scalar",
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Path::Simd128 => "simd128",
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Path::Avx512Vnni => "avx512vnni",
        }
    }
}

impl fmt::Display for KernelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
