//! Which items a run asks, in which order, with which demonstrations:
//! OpenFlamingo's trial schedule for few-shot tasks, file order otherwise.

use crate::dataset::{Dataset, EvalItem};
use crate::run::{request_for, EvalRequest, Shot};
use crate::sampler::{self, PlanConfig, ZeroShotDemos};
use crate::task::{Metric, Task};
use crate::EvalError;

/// The choices that shape the request list.
#[derive(Debug, Clone)]
pub struct RequestOptions {
    /// Items to evaluate (few-shot: OpenFlamingo's `num_samples`, drawn at
    /// random; other tasks: the first ones, MMBench counting questions with
    /// all their rotations).
    pub limit: Option<usize>,
    /// Demonstrations per item.
    pub shots: usize,
    /// Trial seed.
    pub seed: u32,
    /// Query-set size.
    pub query_set_size: usize,
    /// The zero-shot convention.
    pub zero_shot: ZeroShotDemos,
    /// Answer budget.
    pub max_new_tokens: usize,
}

/// MMBench's question group of an item id: rotations are `index + k·10⁶`.
fn circular_group(id: &str) -> String {
    id.parse::<u64>()
        .map_or_else(|_| id.to_string(), |n| (n % 1_000_000).to_string())
}

fn first_items<'a>(task: &Task, items: &'a [EvalItem], limit: Option<usize>) -> Vec<&'a EvalItem> {
    let Some(limit) = limit.filter(|&n| n > 0) else {
        return items.iter().collect();
    };
    if task.metric == Metric::CircularChoice {
        let mut groups = std::collections::HashSet::new();
        for item in items {
            if groups.len() == limit {
                break;
            }
            groups.insert(circular_group(&item.id));
        }
        items
            .iter()
            .filter(|i| groups.contains(&circular_group(&i.id)))
            .collect()
    } else {
        items.iter().take(limit).collect()
    }
}

fn shot(item: &EvalItem, with_images: bool) -> Result<Shot, EvalError> {
    let answer = item.answer.clone().ok_or_else(|| {
        EvalError::data(format!("demonstration {}", item.id), "no answer to show")
    })?;
    Ok(Shot {
        images: if with_images {
            item.images.clone()
        } else {
            Vec::new()
        },
        question: item.question.clone(),
        answer,
    })
}

/// The run's requests, in the order they are asked.
pub fn build(
    task: &Task,
    test: &Dataset,
    train: Option<&Dataset>,
    options: &RequestOptions,
) -> Result<Vec<EvalRequest>, EvalError> {
    if !task.is_few_shot() {
        if options.shots > 0 {
            return Err(EvalError::Usage(format!(
                "--shots: {} is a zero-shot instruct benchmark",
                task.name
            )));
        }
        return Ok(first_items(task, &test.items, options.limit)
            .into_iter()
            .map(|item| request_for(item, task.prompt, Vec::new(), options.max_new_tokens))
            .collect());
    }
    let effective = sampler::effective_num_shots(options.shots, options.zero_shot);
    let pool: &[EvalItem] = match train {
        Some(t) => &t.items,
        None if effective == 0 => &[],
        None => {
            return Err(EvalError::Usage(format!(
                "{} demonstrations per item need a training split: give --train",
                effective
            )))
        }
    };
    let config = PlanConfig {
        test_len: test.items.len(),
        train_len: pool.len(),
        num_samples: options.limit,
        shots: options.shots,
        zero_shot: options.zero_shot,
        query_set_size: if effective == 0 {
            0
        } else {
            options.query_set_size
        },
        seed: options.seed,
    };
    let plan = sampler::plan(&config).map_err(|e| {
        let hint = match e {
            sampler::SamplerError::QuerySetTooLarge { .. } => {
                " (a smaller --query-set-size fits a small training split)"
            }
            _ => "",
        };
        EvalError::Sampler(format!("{e}{hint}"))
    })?;
    plan.eval_order
        .iter()
        .zip(&plan.demos)
        .map(|(&i, demos)| {
            let shots = demos
                .iter()
                .map(|&d| shot(&pool[d], !plan.text_only_demos))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(request_for(
                &test.items[i],
                task.prompt,
                shots,
                options.max_new_tokens,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::ImageRef;

    fn items(ids: &[&str]) -> Dataset {
        Dataset {
            items: ids
                .iter()
                .map(|id| EvalItem {
                    id: id.to_string(),
                    images: vec![ImageRef::File(format!("{id}.png").into())],
                    question: None,
                    answer: Some(format!("caption {id}")),
                })
                .collect(),
            reference: serde_json::Value::Null,
            md5: None,
        }
    }

    fn options(limit: Option<usize>, shots: usize) -> RequestOptions {
        RequestOptions {
            limit,
            shots,
            seed: 42,
            query_set_size: 4,
            zero_shot: ZeroShotDemos::TextOnly,
            max_new_tokens: 5,
        }
    }

    #[test]
    fn mmbench_limit_counts_questions_with_all_rotations() {
        let task = Task::named("mmbench").unwrap();
        let data = items(&["1", "2", "1000001", "3", "1000002", "2000001"]);
        let got = build(&task, &data, None, &options(Some(2), 0)).unwrap();
        let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "1000001", "1000002", "2000001"]);
        assert!(build(&task, &data, None, &options(None, 4)).is_err());
    }

    #[test]
    fn few_shot_requests_follow_the_plan() {
        let task = Task::named("coco").unwrap();
        let test = items(&["a", "b", "c"]);
        let train = items(&["t0", "t1", "t2", "t3", "t4"]);
        let got = build(&task, &test, Some(&train), &options(None, 2)).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got
            .iter()
            .all(|r| r.shots.len() == 2 && r.shots[0].images.len() == 1));
        let zero = build(&task, &test, Some(&train), &options(Some(2), 0)).unwrap();
        assert!(zero
            .iter()
            .all(|r| r.shots.len() == 2 && r.shots[0].images.is_empty()));
        let e = build(&task, &test, None, &options(None, 4))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--train"), "{e}");
        let mut big = options(None, 2);
        big.query_set_size = 2048;
        let e = build(&task, &test, Some(&train), &big)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--query-set-size"), "{e}");
    }
}
