//! Few-shot demonstration sampling, reproducing OpenFlamingo's evaluation
//! sampler draw for draw (Python's `random` and NumPy's legacy `RandomState`).
//!
//! OpenFlamingo's `evaluate.py` (branches `main` and `mllm` alike), in a
//! single process, does for each benchmark, shot count and trial seed:
//!
//! 1. `np.random.seed(seed)`, then draws the evaluated test items with
//!    `np.random.choice(len(test), num_samples, replace=False)` (all of them
//!    when `num_samples` is not positive, still in shuffled order);
//! 2. iterates them through a `DistributedSampler` (shuffle on, its seed 0,
//!    epoch 0), i.e. in the order of `torch.randperm` with a generator seeded
//!    0, in batches of `batch_size`;
//! 3. draws the query set, `np.random.choice(len(train), query_set_size,
//!    replace=False)`, from the same NumPy state;
//! 4. reseeds Python's `random` with `seed + rank` and, for every item of
//!    every batch in turn, draws its demonstrations with
//!    `random.sample(query_set, effective_num_shots)`.
//!
//! Each item's draw follows the previous item's, so the demonstrations do not
//! depend on the batch size at all: batches only group consecutive items.
//! [`plan`] returns the whole schedule; the generators are public for tests.

mod mt19937;
mod numpy_legacy;
mod py_random;
mod torch_randperm;

use std::ops::Range;

pub use mt19937::Mt19937;
pub use numpy_legacy::RandomState;
pub use py_random::PyRandom;
pub use torch_randperm::{TorchGenerator, RANDPERM_SMALL_LIMIT};

/// OpenFlamingo's default query-set size (`--query_set_size`).
pub const DEFAULT_QUERY_SET_SIZE: usize = 2048;
/// OpenFlamingo's default trial seed (`--trial_seeds`).
pub const DEFAULT_SEED: u32 = 42;
/// The `DistributedSampler`'s default seed; with epoch 0 it seeds the
/// generator behind the evaluation order.
pub const DISTRIBUTED_SAMPLER_SEED: u64 = 0;
/// Demonstrations drawn for a zero-shot prompt under
/// [`ZeroShotDemos::TextOnly`].
pub const ZERO_SHOT_TEXT_DEMOS: usize = 2;

/// Why a plan cannot be drawn (where OpenFlamingo's NumPy or `random` calls
/// would raise).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SamplerError {
    /// A draw without replacement asked for more items than exist.
    #[error("cannot sample {requested} distinct items from a population of {population}")]
    SampleTooLarge {
        /// Size of the population.
        population: usize,
        /// Items requested.
        requested: usize,
    },
    /// `num_samples` exceeds the test set.
    #[error("num_samples {requested} exceeds the test set's {available} items")]
    NumSamplesTooLarge {
        /// Items requested.
        requested: usize,
        /// Test set size.
        available: usize,
    },
    /// `query_set_size` exceeds the training set.
    #[error("query_set_size {requested} exceeds the training set's {available} items")]
    QuerySetTooLarge {
        /// Query set size requested.
        requested: usize,
        /// Training set size.
        available: usize,
    },
    /// More demonstrations per prompt than the query set holds.
    #[error("{shots} demonstrations per prompt exceed the query set's {query_set} items")]
    TooManyShots {
        /// Demonstrations per prompt (after the zero-shot convention).
        shots: usize,
        /// Query set size.
        query_set: usize,
    },
}

/// What a zero-shot prompt contains before the query.
///
/// The BLIP-3 card says only that its evaluation is "implemented based on
/// OpenFlamingo" (spec `xgenmm-family.md` §1.5–1.6, where the choice is
/// unconfirmed). The base models are run through OpenFlamingo's
/// `open_flamingo` evaluation model (branch `mllm` wraps every VLM class in
/// it), for which `compute_effective_num_shots` turns 0 shots into 2
/// text-only ones, so [`ZeroShotDemos::TextOnly`] is the likelier convention
/// and the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroShotDemos {
    /// Two demonstrations are drawn as for any shot count, and shown as text
    /// only: their `<image>` markers are deleted and their images not passed
    /// (OpenFlamingo's `open_flamingo` model type, after Flamingo).
    #[default]
    TextOnly,
    /// No demonstrations and no draws (OpenFlamingo's other model types).
    Empty,
}

/// The demonstrations per prompt that OpenFlamingo draws for `shots`
/// (`compute_effective_num_shots`).
pub fn effective_num_shots(shots: usize, zero_shot: ZeroShotDemos) -> usize {
    match (shots, zero_shot) {
        (0, ZeroShotDemos::TextOnly) => ZERO_SHOT_TEXT_DEMOS,
        _ => shots,
    }
}

/// The inputs of one OpenFlamingo evaluation trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanConfig {
    /// Items in the test split.
    pub test_len: usize,
    /// Items in the training split the demonstrations come from.
    pub train_len: usize,
    /// Test items to evaluate; `None` or `Some(0)` means all of them
    /// (OpenFlamingo's `--num_samples -1`).
    pub num_samples: Option<usize>,
    /// Shots as requested (0, 4, 8, …).
    pub shots: usize,
    /// The zero-shot convention.
    pub zero_shot: ZeroShotDemos,
    /// Training items demonstrations are drawn from (`--query_set_size`).
    pub query_set_size: usize,
    /// The trial seed (`--trial_seeds`); NumPy accepts `0..2^32` only.
    pub seed: u32,
}

impl PlanConfig {
    /// OpenFlamingo's defaults: every test item, a query set of 2,048,
    /// seed 42, two text-only demonstrations at zero shots.
    pub fn new(test_len: usize, train_len: usize, shots: usize) -> Self {
        Self {
            test_len,
            train_len,
            num_samples: None,
            shots,
            zero_shot: ZeroShotDemos::default(),
            query_set_size: DEFAULT_QUERY_SET_SIZE,
            seed: DEFAULT_SEED,
        }
    }
}

/// The schedule of one trial: which test items, in which order, with which
/// demonstrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FewShotPlan {
    /// Test indices in evaluation order.
    pub eval_order: Vec<usize>,
    /// Training indices of each evaluated item's demonstrations, in prompt
    /// order (parallel to `eval_order`).
    pub demos: Vec<Vec<usize>>,
    /// The query set: training indices, in the order drawn.
    pub query_set: Vec<usize>,
    /// Whether the demonstrations are text only (zero shots under
    /// [`ZeroShotDemos::TextOnly`]): their `<image>` markers are deleted and
    /// only the query's image is passed.
    pub text_only_demos: bool,
}

impl FewShotPlan {
    /// Positions in `eval_order` of each batch OpenFlamingo's `DataLoader`
    /// forms: consecutive runs of `batch_size` (a zero size counts as 1), the
    /// last one shorter.
    pub fn batch_ranges(&self, batch_size: usize) -> Vec<Range<usize>> {
        let size = batch_size.max(1);
        let len = self.eval_order.len();
        (0..len)
            .step_by(size)
            .map(|start| start..(start + size).min(len))
            .collect()
    }
}

/// The evaluation order of a `DistributedSampler` over `n` items in one
/// process: `torch.randperm(n)` from a generator seeded with the sampler's
/// seed plus the epoch (0 and 0 in OpenFlamingo).
pub fn distributed_sampler_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    TorchGenerator::new(seed.wrapping_add(epoch)).randperm(n)
}

/// Draws the whole few-shot schedule of one trial as OpenFlamingo's
/// `evaluate.py` does with one process (world size 1, rank 0).
pub fn plan(config: &PlanConfig) -> Result<FewShotPlan, SamplerError> {
    let wanted = match config.num_samples {
        Some(n) if n > 0 => n,
        _ => config.test_len,
    };
    if wanted > config.test_len {
        return Err(SamplerError::NumSamplesTooLarge {
            requested: wanted,
            available: config.test_len,
        });
    }
    if config.query_set_size > config.train_len {
        return Err(SamplerError::QuerySetTooLarge {
            requested: config.query_set_size,
            available: config.train_len,
        });
    }
    let shots = effective_num_shots(config.shots, config.zero_shot);
    if wanted > 0 && shots > config.query_set_size {
        return Err(SamplerError::TooManyShots {
            shots,
            query_set: config.query_set_size,
        });
    }

    let mut numpy = RandomState::new(config.seed);
    let subset = numpy.choice_without_replacement(config.test_len, wanted)?;
    let eval_order: Vec<usize> =
        distributed_sampler_order(subset.len(), DISTRIBUTED_SAMPLER_SEED, 0)
            .into_iter()
            .map(|i| subset[i])
            .collect();
    let query_set = numpy.choice_without_replacement(config.train_len, config.query_set_size)?;

    // `utils.random_seed(seed, rank)` with rank 0.
    let mut python = PyRandom::new(i128::from(config.seed));
    let demos = eval_order
        .iter()
        .map(|_| python.sample(&query_set, shots))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(FewShotPlan {
        eval_order,
        demos,
        query_set,
        text_only_demos: config.shots == 0 && shots > 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_shot_conventions() {
        assert_eq!(effective_num_shots(0, ZeroShotDemos::TextOnly), 2);
        assert_eq!(effective_num_shots(0, ZeroShotDemos::Empty), 0);
        assert_eq!(effective_num_shots(4, ZeroShotDemos::TextOnly), 4);

        let mut config = PlanConfig::new(20, 3000, 0);
        let text = plan(&config).unwrap();
        assert!(text.text_only_demos);
        assert!(text.demos.iter().all(|d| d.len() == 2));
        config.zero_shot = ZeroShotDemos::Empty;
        let empty = plan(&config).unwrap();
        assert!(!empty.text_only_demos);
        assert!(empty.demos.iter().all(Vec::is_empty));
        assert_eq!(text.eval_order, empty.eval_order);
    }

    #[test]
    fn oversize_requests_are_errors() {
        let mut config = PlanConfig::new(10, 100, 4);
        assert_eq!(
            plan(&config),
            Err(SamplerError::QuerySetTooLarge {
                requested: 2048,
                available: 100
            })
        );
        config.query_set_size = 3;
        assert!(matches!(
            plan(&config),
            Err(SamplerError::TooManyShots { .. })
        ));
        config.query_set_size = 50;
        config.num_samples = Some(11);
        assert!(matches!(
            plan(&config),
            Err(SamplerError::NumSamplesTooLarge { .. })
        ));
    }

    #[test]
    fn plan_shape() {
        let mut config = PlanConfig::new(50, 5000, 8);
        config.num_samples = Some(7);
        let p = plan(&config).unwrap();
        assert_eq!(p.eval_order.len(), 7);
        assert_eq!(p.demos.len(), 7);
        assert_eq!(p.query_set.len(), 2048);
        assert!(p.demos.iter().all(|d| d.len() == 8));
        assert_eq!(p.batch_ranges(3), vec![0..3, 3..6, 6..7]);
    }
}
