//! Micro-benchmark of the decode kernels: streams a set of weight matrices the
//! size of Phi-3-mini's per-layer products (too large for any cache) through
//! each GEMV and reports the weight bytes read per second, next to the
//! machine's read bandwidth.
//!
//! ```sh
//! cargo run --release -p blip3-kernels --example microbench [-- LAYERS]
//! ```
//! `LAYERS` (default 8) sets how many decoder layers' worth of matrices are
//! allocated: 8 layers ≈ 0.9 G weights.

use std::time::Instant;

use blip3_kernels::quantized::QuantizedMatrix;
use blip3_kernels::{bandwidth, gemv, q4::Q4Matrix, q4k::Q4KMatrix, q8::Q8Matrix};
use half::bf16;

/// (rows, cols) of one Phi-3-mini decoder layer's products.
const LAYER: [(usize, usize); 4] = [(9216, 3072), (3072, 3072), (16384, 3072), (3072, 8192)];

fn data(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Runs `step` (one pass over every matrix) `reps` times; best bytes/s.
fn measure(bytes: usize, reps: usize, mut step: impl FnMut()) -> f64 {
    step();
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        step();
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best
}

fn main() {
    let layers: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(8);
    let shapes: Vec<(usize, usize)> = (0..layers).flat_map(|_| LAYER).collect();
    let weights: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(i, &(n, k))| data(n * k, i as u32 + 1))
        .collect();
    let xs: Vec<Vec<f32>> = shapes.iter().map(|&(_, k)| data(k, 99)).collect();
    let mut ys: Vec<Vec<f32>> = shapes.iter().map(|&(n, _)| vec![0f32; n]).collect();
    let params: usize = shapes.iter().map(|&(n, k)| n * k).sum();
    println!(
        "{layers} layers, {:.2} G weights per pass",
        params as f64 / 1e9
    );

    let bw = bandwidth::read_bandwidth(1 << 30, rayon::current_num_threads(), 3);
    println!("read bandwidth: {:.1} GB/s", bw / 1e9);

    let bf: Vec<Vec<bf16>> = weights
        .iter()
        .map(|w| w.iter().map(|&v| bf16::from_f32(v)).collect())
        .collect();
    let rate = measure(params * 2, 5, || {
        for ((w, x), y) in bf.iter().zip(&xs).zip(ys.iter_mut()) {
            let (n, k) = (y.len(), x.len());
            gemv::gemv_bf16(w, x, y, 1, n, k);
        }
    });
    report("bf16 gemv", rate, bw);
    drop(bf);

    type Quantize = fn(&[f32], usize, usize) -> Box<dyn QuantizedMatrix>;
    let formats: [Quantize; 3] = [
        |w, n, k| Box::new(Q8Matrix::quantize(w, n, k).expect("k is a multiple of 32")),
        |w, n, k| Box::new(Q4Matrix::quantize(w, n, k).expect("k is a multiple of 32")),
        |w, n, k| Box::new(Q4KMatrix::quantize(w, n, k).expect("k is a multiple of 256")),
    ];
    for quantize in formats {
        let mats: Vec<Box<dyn QuantizedMatrix>> = weights
            .iter()
            .zip(&shapes)
            .map(|(w, &(n, k))| quantize(w, n, k))
            .collect();
        let bytes = mats.iter().map(|m| m.size_bytes()).sum();
        let rate = measure(bytes, 5, || {
            for ((w, x), y) in mats.iter().zip(&xs).zip(ys.iter_mut()) {
                w.gemv(x, y, 1);
            }
        });
        report(&format!("{} gemv", mats[0].format()), rate, bw);
    }

    // In-cache throughput (a 512 × 3072 matrix read 200 times): the kernel's
    // own speed limit, which must stay well above the memory bandwidth.
    let (n, k) = (512, 3072);
    let w = data(n * k, 7);
    let x = data(k, 8);
    let mut y = vec![0f32; n];
    let wb: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
    let rate = measure(200 * n * k * 2, 3, || {
        for _ in 0..200 {
            gemv::gemv_bf16(&wb, &x, &mut y, 1, n, k);
        }
    });
    report("bf16 hot", rate, bw);
    for quantize in formats {
        let wq = quantize(&w, n, k);
        let rate = measure(200 * wq.size_bytes(), 3, || {
            for _ in 0..200 {
                wq.gemv(&x, &mut y, 1);
            }
        });
        report(&format!("{} hot", wq.format()), rate, bw);
    }
}

fn report(name: &str, rate: f64, bw: f64) {
    println!(
        "{name:10} {:6.1} GB/s  ({:3.0} % of read bandwidth)",
        rate / 1e9,
        100.0 * rate / bw
    );
}
