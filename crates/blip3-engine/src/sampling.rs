//! Choosing the next token: greedy (the reference's behaviour), or sampling
//! with temperature, top-k, top-p and a repetition penalty, reproducible from a
//! seed. Shared by the CLI and the server.

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 selects greedy decoding.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1 = all).
    pub top_p: f32,
    /// HF-style penalty on tokens already in the prompt or answer (1 = none):
    /// positive logits are divided by it, negative ones multiplied.
    pub repetition_penalty: f32,
    /// Seed of the random stream (same seed and inputs → same tokens).
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Checks the ranges; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature.is_finite() && (0.0..=100.0).contains(&self.temperature)) {
            return Err(format!(
                "temperature must be in [0, 100], got {}",
                self.temperature
            ));
        }
        if !(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(format!(
                "repetition_penalty must be positive, got {}",
                self.repetition_penalty
            ));
        }
        Ok(())
    }

    /// True when the choice is the argmax (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// The chosen token with its log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Token id.
    pub id: u32,
    /// Natural-log probability of `id` under the model's distribution
    /// (log-softmax of the logits after the repetition penalty, before
    /// temperature and truncation).
    pub logprob: f32,
    /// The `top_n` most likely tokens and their log-probabilities, best first.
    pub top: Vec<(u32, f32)>,
}

/// SplitMix64: a tiny, well-mixed generator; enough for sampling and fully
/// reproducible across platforms.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Applies [`SamplingParams`] step after step.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: SplitMix64,
}

impl Sampler {
    /// A sampler whose random stream starts at `params.seed`.
    pub fn new(params: SamplingParams) -> Self {
        let rng = SplitMix64(params.seed);
        Self { params, rng }
    }

    /// The parameters in use.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Chooses the next token from `logits`; `history` (prompt + answer so far)
    /// feeds the repetition penalty; `top_n` alternatives are reported.
    pub fn sample(&mut self, logits: &[f32], history: &[u32], top_n: usize) -> Choice {
        let mut z = logits.to_vec();
        if self.params.repetition_penalty != 1.0 {
            let p = self.params.repetition_penalty;
            let mut seen = vec![false; z.len()];
            for &id in history {
                let i = id as usize;
                if i < z.len() && !seen[i] {
                    seen[i] = true;
                    z[i] = if z[i] > 0.0 { z[i] / p } else { z[i] * p };
                }
            }
        }
        let logprobs = log_softmax(&z);
        let id = if self.params.is_greedy() {
            argmax_first(&z)
        } else {
            self.draw(&z)
        };
        let top = if top_n == 0 {
            Vec::new()
        } else {
            let mut order: Vec<u32> = (0..z.len() as u32).collect();
            let n = top_n.min(order.len());
            order.select_nth_unstable_by(n.saturating_sub(1), |&a, &b| {
                logprobs[b as usize]
                    .total_cmp(&logprobs[a as usize])
                    .then(a.cmp(&b))
            });
            order.truncate(n);
            order.sort_by(|&a, &b| {
                logprobs[b as usize]
                    .total_cmp(&logprobs[a as usize])
                    .then(a.cmp(&b))
            });
            order
                .into_iter()
                .map(|i| (i, logprobs[i as usize]))
                .collect()
        };
        Choice {
            id,
            logprob: logprobs
                .get(id as usize)
                .copied()
                .unwrap_or(f32::NEG_INFINITY),
            top,
        }
    }

    /// Temperature, top-k and top-p, then one draw.
    fn draw(&mut self, z: &[f32]) -> u32 {
        let t = self.params.temperature;
        let mut order: Vec<u32> = (0..z.len() as u32).collect();
        order.sort_by(|&a, &b| z[b as usize].total_cmp(&z[a as usize]).then(a.cmp(&b)));
        if self.params.top_k > 0 {
            order.truncate(self.params.top_k);
        }
        let max = z[order[0] as usize];
        let mut probs: Vec<f64> = order
            .iter()
            .map(|&i| (f64::from(z[i as usize] - max) / f64::from(t)).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        if self.params.top_p < 1.0 {
            let mut cumulative = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cumulative += p / total;
                if cumulative >= f64::from(self.params.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            order.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        let mut u = self.rng.next_f64() * total;
        for (i, p) in probs.iter().enumerate() {
            if u < *p {
                return order[i];
            }
            u -= p;
        }
        order[order.len() - 1]
    }
}

/// Index of the largest value, the first one on ties (as `torch.argmax`);
/// NaNs never win over numbers.
pub fn argmax_first(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || (values[best].is_nan() && !v.is_nan()) {
            best = i;
        }
    }
    best as u32
}

/// `log(softmax(z))`, computed stably.
fn log_softmax(z: &[f32]) -> Vec<f32> {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = z.iter().map(|&v| f64::from(v - max).exp()).sum();
    let log_sum = sum.ln() as f32;
    z.iter().map(|&v| v - max - log_sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 3.0, -1.0, 0.5]
    }

    #[test]
    fn greedy_takes_the_first_maximum_and_reports_logprobs() {
        let mut s = Sampler::new(SamplingParams::default());
        let c = s.sample(&logits(), &[], 3);
        assert_eq!(c.id, 1);
        let total: f32 = logits().iter().map(|v| v.exp()).sum();
        assert!((c.logprob - (3f32.exp() / total).ln()).abs() < 1e-5);
        assert_eq!(c.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3, 2]);
    }

    #[test]
    fn argmax_skips_nan() {
        assert_eq!(argmax_first(&[f32::NAN, 1.0, 2.0, 2.0]), 2);
    }

    #[test]
    fn same_seed_same_tokens_and_different_seed_differs() {
        let params = SamplingParams {
            temperature: 1.5,
            seed: 7,
            ..Default::default()
        };
        let draw = |p: SamplingParams| {
            let mut s = Sampler::new(p);
            (0..64)
                .map(|_| s.sample(&logits(), &[], 0).id)
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(params.clone()), draw(params.clone()));
        assert_ne!(
            draw(params.clone()),
            draw(SamplingParams { seed: 8, ..params })
        );
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 2,
            seed: 1,
            ..Default::default()
        });
        for _ in 0..200 {
            let id = s.sample(&logits(), &[], 0).id;
            assert!(id == 1 || id == 3, "top_k 2 drew {id}");
        }
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_p: 0.3,
            seed: 2,
            ..Default::default()
        });
        for _ in 0..200 {
            // Tokens 1 and 3 hold ~0.31 each: the nucleus is token 1 alone.
            assert_eq!(s.sample(&logits(), &[], 0).id, 1);
        }
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 2.0,
            ..Default::default()
        });
        // 1 and 3 tie at 3.0; penalising 1 leaves 3 on top.
        assert_eq!(s.sample(&logits(), &[1, 1], 0).id, 3);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = SamplingParams {
            top_p: 0.0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("top_p"));
        assert!(SamplingParams {
            temperature: -1.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err()
        .contains("temperature"));
    }
}
