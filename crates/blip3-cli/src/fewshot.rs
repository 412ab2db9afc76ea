//! `blip3 fewshot`: OpenFlamingo-style few-shot captioning and VQA with a
//! base model (family spec §1.5–1.6): demonstrations and the query, one
//! squashed crop per image unless `--aspect` says otherwise.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use blip3_engine::fewshot::{postprocess, prompt, Demo, Task};

use crate::commands::{load, load_images, output_json};
use crate::{AspectArg, FewshotArgs, LoadArgs, TaskArg};

/// Reads the demonstrations file: (image path, demo) per non-empty line.
fn read_demos(path: &Path, task: Task) -> Result<Vec<(PathBuf, Demo)>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut demos = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), i + 1);
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{}: not JSON", at()))?;
        let text = |key: &str| -> Result<String> {
            v.get(key)
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .with_context(|| format!("{}: no \"{key}\" string", at()))
        };
        let image = base.join(text("image")?);
        let demo = match task {
            Task::Caption => Demo {
                question: None,
                answer: text("caption")?,
            },
            Task::Vqa => Demo {
                question: Some(text("question")?),
                answer: text("answer")?,
            },
        };
        demos.push((image, demo));
    }
    Ok(demos)
}

/// The load flags for a few-shot run: one squashed crop per image unless
/// `--aspect` says otherwise (family spec §1.5).
pub(crate) fn few_shot_load_args(load: &LoadArgs) -> LoadArgs {
    let mut load = load.clone();
    load.aspect = Some(load.aspect.unwrap_or(AspectArg::Pad));
    load
}

/// `<image placeholder>` tokens after each `<image>` when asked for: Q − 1,
/// so each image takes Q + (Q − 1) positions as in the model card's prompts.
pub(crate) fn placeholders(pipeline: &blip3_engine::Pipeline, on: bool) -> usize {
    let latents = pipeline
        .model()
        .config()
        .vision_tokenizer_config
        .num_vis_tokens;
    if on {
        latents.saturating_sub(1)
    } else {
        0
    }
}

pub fn fewshot(args: FewshotArgs) -> Result<ExitCode> {
    let task = match args.task {
        TaskArg::Caption => Task::Caption,
        TaskArg::Vqa => Task::Vqa,
    };
    let mut demos = read_demos(&args.demos, task)?;
    if let Some(k) = args.shots {
        if k > demos.len() {
            bail!(
                "--shots {k}: {} holds only {} demonstrations",
                args.demos.display(),
                demos.len()
            );
        }
        demos.truncate(k);
    }
    let load_start = std::time::Instant::now();
    let pipeline = load(&few_shot_load_args(&args.load))?;
    let load_s = load_start.elapsed().as_secs_f64();
    let placeholders = placeholders(&pipeline, args.placeholders);
    let just_demos: Vec<Demo> = demos.iter().map(|(_, d)| d.clone()).collect();
    let text = prompt(task, &just_demos, args.question.as_deref(), placeholders);
    let mut paths: Vec<PathBuf> = demos.into_iter().map(|(p, _)| p).collect();
    paths.push(args.image.clone());
    let images = load_images(&pipeline, &paths)?;
    let mut params = args
        .sampling
        .params(args.max_new_tokens.unwrap_or(task.default_max_new_tokens()));
    params.completion = true;
    let output = pipeline.generate(&images, &text, &params, false, &mut |_| {})?;
    let raw = pipeline.tokenizer().decode(&output.generated_ids, true);
    let answer = postprocess(task, &raw);
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let mut value = output_json(&output, load_s);
        value["prompt"] = text.into();
        value["raw"] = raw.into();
        value["answer"] = answer.into();
        value["shots"] = (paths.len() - 1).into();
        writeln!(stdout, "{value}")?;
    } else {
        writeln!(stdout, "{answer}")?;
    }
    Ok(ExitCode::SUCCESS)
}
