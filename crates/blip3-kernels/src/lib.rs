//! CPU kernels behind a small interface, picked at run time from the CPU's
//! features so one binary runs everywhere and uses the widest instructions
//! available.
//!
//! * [`gemv`]: `y = W·x` for a few activation rows against a BF16 weight
//!   matrix: the decode-time product, bound by memory bandwidth, where widening
//!   the whole weight to F32 first (what a generic matmul needs) costs 3× the
//!   traffic.
//!
//! * [`gemm`]: `C = A·Wᵀ` for many rows (prefill, ViT, perceiver): a blocked
//!   F32 GEMM with a register-tiled micro-kernel (AVX2, AVX-512 or NEON)
//!   that reads W in its storage format (F32, BF16, F16, Q8_0, Q4_0) while
//!   packing.
//! * [`activation`]: vectorised element-wise activations (GEMM epilogues).
//! * [`allocator`]: keeping large freed buffers for reuse (no page zeroing per layer).
//! * [`amx`]: the GEMM on BF16 weights with AMX tiles (where the CPU and OS allow).
//! * [`avx512_bf16`]: the GEMM on BF16 weights with AVX-512 BF16 dot products
//!   (where there is no AMX).
//! * [`avx512_vnni`]: the GEMM on Q8_0 weights with AVX-512 VNNI integer dot
//!   products, the activations quantised per block (where there is no AMX).
//! * [`widen`]: parallel BF16 → F32 widening (candle fallbacks).
//! * [`q8`]: Q8_0 block quantisation and its integer-dot GEMV.
//! * [`q4`]: Q4_0 block quantisation and its integer-dot GEMV.
//! * [`q4k`]: Q4_K super-blocks (6-bit sub-block scales and minimums) and their GEMV.
//! * [`quantized`]: the one interface layers use for every block format.
//! * [`attention`]: decode-step attention read in place from the KV cache.
//! * [`bandwidth`]: a memory-bandwidth probe for roofline fractions.
//! * [`peak`]: the measured F32 FMA and BF16 dot-product peaks (compute roofline).
//! * [`pool`]: running a caller's sequence of kernels on the thread pool.
//! * [`scratch`]: per-thread buffers reused across calls (no allocation per decode step).
//!
//! Every kernel has a scalar reference implementation it is tested against.

pub mod activation;
pub mod allocator;
// x86-64 kernels: elsewhere only their scalar fallbacks and stubs run, so
// parts of them are unused there by design.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_variables))]
pub mod amx;
pub mod attention;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_variables))]
pub mod avx512_bf16;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_variables))]
pub mod avx512_vnni;
pub mod bandwidth;
pub mod cpu;
pub mod gemm;
pub mod gemv;
mod interleaved;
pub mod peak;
pub mod pool;
pub mod q4;
pub mod q4k;
pub mod q8;
pub mod quantized;
pub mod scratch;
mod shared;
pub mod widen;
