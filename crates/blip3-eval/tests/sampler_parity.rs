//! Parity of the few-shot sampler with CPython's `random`, NumPy's legacy
//! `RandomState`, torch's CPU `randperm` and OpenFlamingo's evaluation
//! sampler, against goldens that
//! `tools/eval-reference/fewshot_sampler_reference.py` recorded from them.

use std::path::PathBuf;

use blip3_eval::sampler::{
    distributed_sampler_order, plan, PlanConfig, PyRandom, RandomState, SamplerError,
    TorchGenerator, ZeroShotDemos,
};
use serde_json::Value;

fn golden(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/eval/fewshot")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| match x {
            Value::String(s) => s.parse().unwrap(),
            other => other.as_u64().unwrap(),
        })
        .collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    u64s(v).into_iter().map(|x| x as usize).collect()
}

/// The script's `mixhash`: the wrapping sum of SplitMix64's output mix over
/// the keys `i * 2^32 + x_i`.
fn mixhash(values: &[usize]) -> u64 {
    values
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let mut z = ((i as u64) << 32).wrapping_add(x as u64);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
        .fold(0u64, u64::wrapping_add)
}

/// Checks `values` against a summary written by the script's `summarize`.
fn assert_summary(values: &[usize], summary: &Value, what: &str) {
    assert_eq!(
        values.len() as u64,
        summary["len"].as_u64().unwrap(),
        "{what}: length"
    );
    if let Some(full) = summary.get("full") {
        assert_eq!(values, usizes(full).as_slice(), "{what}");
        return;
    }
    let head = usizes(&summary["head"]);
    let tail = usizes(&summary["tail"]);
    assert_eq!(&values[..head.len()], head.as_slice(), "{what}: head");
    assert_eq!(
        &values[values.len() - tail.len()..],
        tail.as_slice(),
        "{what}: tail"
    );
    let expected: u64 = summary["mixhash"].as_str().unwrap().parse().unwrap();
    assert_eq!(mixhash(values), expected, "{what}: mixhash");
}

/// Little-endian 32-bit words as lowercase hex without leading zeros.
fn words_hex(words: &[u32]) -> String {
    let top = match words.iter().rposition(|&w| w != 0) {
        Some(top) => top,
        None => return "0".to_string(),
    };
    let mut s = format!("{:x}", words[top]);
    for w in words[..top].iter().rev() {
        s.push_str(&format!("{w:08x}"));
    }
    s
}

#[test]
fn python_seeding_any_integer() {
    let g = golden("generators.golden.json");
    let cases = g["python_random"]["seed_words"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let words: Vec<u32> = u64s(&case["abs_words"])
            .into_iter()
            .map(|w| w as u32)
            .collect();
        let expected = u64s(&case["getrandbits32"]);
        let mut rng = PyRandom::from_abs_words(&words);
        let got: Vec<u64> = (0..expected.len())
            .map(|_| rng.getrandbits_u64(32))
            .collect();
        assert_eq!(got, expected, "seed {}", case["seed"]);
        // Seeds that fit an i128 also go through `new`, sign included.
        if let Ok(seed) = case["seed"].as_str().unwrap().parse::<i128>() {
            let mut rng = PyRandom::new(seed);
            let got: Vec<u64> = (0..expected.len())
                .map(|_| rng.getrandbits_u64(32))
                .collect();
            assert_eq!(got, expected, "seed {seed} via new");
        }
    }
}

#[test]
fn python_getrandbits_widths() {
    let g = golden("generators.golden.json");
    for case in g["python_random"]["getrandbits_widths"].as_array().unwrap() {
        let mut rng = PyRandom::new(i128::from(case["seed"].as_i64().unwrap()));
        for (k, hex) in case["values_hex"].as_array().unwrap().iter().enumerate() {
            let words = rng.getrandbits(k);
            assert_eq!(words.len(), k.div_ceil(32));
            assert_eq!(words_hex(&words), hex.as_str().unwrap(), "width {k}");
        }
    }
}

#[test]
fn python_randbelow() {
    let g = golden("generators.golden.json");
    for case in g["python_random"]["randbelow"].as_array().unwrap() {
        let mut rng = PyRandom::new(i128::from(case["seed"].as_i64().unwrap()));
        let bounds = u64s(&case["bounds"]);
        for (bound, values) in bounds.iter().zip(case["values"].as_array().unwrap()) {
            let got: Vec<u64> = (0..8).map(|_| rng.randbelow(*bound)).collect();
            assert_eq!(got, u64s(values), "bound {bound}");
        }
    }
}

#[test]
fn python_sample_both_branches() {
    let g = golden("generators.golden.json");
    for case in g["python_random"]["sample"].as_array().unwrap() {
        let mut rng = PyRandom::new(i128::from(case["seed"].as_i64().unwrap()));
        for c in case["cases"].as_array().unwrap() {
            let n = c["n"].as_u64().unwrap() as usize;
            let k = c["k"].as_u64().unwrap() as usize;
            let picks = rng.sample_indices(n, k).unwrap();
            assert_summary(&picks, &c["picks"], &format!("sample(range({n}), {k})"));
        }
    }
}

#[test]
fn numpy_words_and_intervals() {
    let g = golden("generators.golden.json");
    for case in g["numpy"]["u32"].as_array().unwrap() {
        let mut rs = RandomState::new(case["seed"].as_u64().unwrap() as u32);
        let expected = u64s(&case["u32"]);
        let got: Vec<u64> = expected.iter().map(|_| u64::from(rs.next_u32())).collect();
        assert_eq!(got, expected);
    }
    for case in g["numpy"]["interval"].as_array().unwrap() {
        let mut rs = RandomState::new(case["seed"].as_u64().unwrap() as u32);
        let maxima = u64s(&case["maxima"]);
        for (max, values) in maxima.iter().zip(case["values"].as_array().unwrap()) {
            let got: Vec<u64> = (0..6).map(|_| rs.random_interval(*max)).collect();
            assert_eq!(got, u64s(values), "random_interval({max})");
        }
    }
}

#[test]
fn numpy_permutation_and_choice_sequences() {
    let g = golden("generators.golden.json");
    for case in g["numpy"]["sequence"].as_array().unwrap() {
        let mut rs = RandomState::new(case["seed"].as_u64().unwrap() as u32);
        for c in case["cases"].as_array().unwrap() {
            let n = c["n"].as_u64().unwrap() as usize;
            if let Some(summary) = c.get("perm") {
                assert_summary(&rs.permutation(n), summary, &format!("permutation({n})"));
            } else {
                let size = c["size"].as_u64().unwrap() as usize;
                let picks = rs.choice_without_replacement(n, size).unwrap();
                assert_summary(&picks, &c["choice"], &format!("choice({n}, {size})"));
            }
        }
    }
}

#[test]
fn torch_randperm_small_path() {
    let g = golden("generators.golden.json");
    for case in g["torch_randperm"].as_array().unwrap() {
        let seed: u64 = case["seed"].as_str().unwrap().parse().unwrap();
        let mut gen = TorchGenerator::new(seed);
        for c in case["cases"].as_array().unwrap() {
            let n = c["n"].as_u64().unwrap() as usize;
            assert_summary(
                &gen.randperm(n),
                &c["perm"],
                &format!("randperm({n}), seed {seed}"),
            );
        }
    }
}

/// torch's 64-bit inside-out path (n >= u32::MAX / 20): 1.7 GB and some
/// seconds, so opt-in: `cargo test -p blip3-eval --release -- --ignored`.
#[test]
#[ignore]
fn torch_randperm_large_path() {
    let g = golden("randperm_large.golden.json");
    let n = g["n"].as_u64().unwrap() as usize;
    assert_eq!(n as u64, blip3_eval::sampler::RANDPERM_SMALL_LIMIT);
    let perm = distributed_sampler_order(n, g["seed"].as_u64().unwrap(), 0);
    assert_eq!(&perm[..16], usizes(&g["head"]).as_slice());
    assert_eq!(&perm[n - 16..], usizes(&g["tail"]).as_slice());
    let expected: u64 = g["mixhash"].as_str().unwrap().parse().unwrap();
    assert_eq!(mixhash(&perm), expected);
}

fn config_of(case: &Value) -> PlanConfig {
    let num = |key: &str| case[key].as_u64().unwrap() as usize;
    let num_samples = case["num_samples"].as_i64().unwrap();
    PlanConfig {
        test_len: num("test_len"),
        train_len: num("train_len"),
        num_samples: usize::try_from(num_samples).ok(),
        shots: num("shots"),
        zero_shot: match case["model"].as_str().unwrap() {
            "open_flamingo" => ZeroShotDemos::TextOnly,
            _ => ZeroShotDemos::Empty,
        },
        query_set_size: num("query_set_size"),
        seed: case["seed"].as_u64().unwrap() as u32,
    }
}

#[test]
fn openflamingo_plans() {
    let g = golden("plans.golden.json");
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let config = config_of(case);
        let result = plan(&config);
        if let Some(message) = case.get("error") {
            let err = result.expect_err(name);
            // numpy raises for the two choice() calls, random.sample for the shots.
            let expected_numpy = message
                .as_str()
                .unwrap()
                .contains("Cannot take a larger sample");
            assert_eq!(
                expected_numpy,
                !matches!(err, SamplerError::TooManyShots { .. }),
                "{name}: {err}"
            );
            continue;
        }
        let p = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_summary(
            &p.eval_order,
            &case["eval_order"],
            &format!("{name}: eval order"),
        );
        assert_summary(
            &p.query_set,
            &case["query_set"],
            &format!("{name}: query set"),
        );
        let flat: Vec<usize> = p.demos.iter().flatten().copied().collect();
        assert_summary(&flat, &case["demos_flat"], &format!("{name}: demos"));
        for (i, first) in case["demos_first"].as_array().unwrap().iter().enumerate() {
            assert_eq!(p.demos[i], usizes(first), "{name}: demos of item {i}");
        }
        if let Some(shots) = case["effective_shots"].as_u64() {
            assert!(p.demos.iter().all(|d| d.len() as u64 == shots), "{name}");
        }
        assert_eq!(
            p.text_only_demos,
            config.shots == 0 && !p.demos.iter().all(Vec::is_empty)
        );
        // Batches of any size cover the order once, in order.
        let ranges = p.batch_ranges(case["batch_size"].as_u64().unwrap() as usize);
        let covered: Vec<usize> = ranges.into_iter().flatten().collect();
        assert_eq!(
            covered,
            (0..p.eval_order.len()).collect::<Vec<_>>(),
            "{name}"
        );
    }
}

#[test]
fn plans_do_not_depend_on_batch_size() {
    let g = golden("plans.golden.json");
    let by_name = |name: &str| {
        g["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    // The reference ran these with batch sizes 8, 1 and 64.
    let b8 = by_name("coco_4shot");
    for other in ["coco_4shot_b1", "coco_4shot_b64"] {
        let c = by_name(other);
        assert_eq!(c["eval_order"], b8["eval_order"]);
        assert_eq!(c["demos_flat"], b8["demos_flat"]);
    }
}
