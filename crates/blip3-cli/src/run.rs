//! `blip3 run`: one question answered as it is generated, or a JSONL batch.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use blip3_engine::Pipeline;

use crate::commands::{load, load_images, output_json};
use crate::RunArgs;

const DEFAULT_QUESTION: &str = "Describe this image.";

/// Loads the model behind a spinner (stderr only, so stdout stays clean).
fn load_with_progress(args: &RunArgs) -> Result<(Pipeline, f64)> {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    spinner.set_message(format!("loading {}", args.load.model.display()));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let start = Instant::now();
    let pipeline = load(&args.load);
    spinner.finish_and_clear();
    Ok((pipeline?, start.elapsed().as_secs_f64()))
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let (pipeline, load_s) = load_with_progress(&args)?;
    if let Some(batch) = &args.batch {
        let out = args.out.as_deref().context("--batch needs --out")?;
        return run_batch(&pipeline, &args, batch, out);
    }
    let (paths, question) = split_inputs(&args.inputs);
    let images = load_images(&pipeline, &paths)?;
    let prompt = prompt_for(&pipeline, &args, question, images.len());
    let mut params = args.sampling.params(args.max_new_tokens);
    params.completion = args.raw_prompt;
    let tokenizer = pipeline.tokenizer();
    let mut ids = Vec::new();
    let mut shown = 0usize;
    let mut stdout = std::io::stdout().lock();
    let stream = !args.json;
    let output = pipeline.generate(&images, &prompt, &params, false, &mut |choice| {
        if !stream {
            return;
        }
        ids.push(choice.id);
        let text = tokenizer.decode_answer(&ids);
        // Print what is new, keeping back a trailing partial character.
        let mut end = text.len();
        if text.ends_with('\u{FFFD}') {
            end -= '\u{FFFD}'.len_utf8();
        }
        if end > shown && text.is_char_boundary(shown) {
            let _ = write!(stdout, "{}", &text[shown..end]);
            let _ = stdout.flush();
            shown = end;
        }
    })?;
    if args.json {
        writeln!(stdout, "{}", output_json(&output, load_s))?;
    } else {
        if output.text.len() > shown && output.text.is_char_boundary(shown) {
            write!(stdout, "{}", &output.text[shown..])?;
        }
        writeln!(stdout)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `a.png [b.png ...] [question]`: every argument but a last one that is not
/// an existing file names an image.
fn split_inputs(inputs: &[String]) -> (Vec<std::path::PathBuf>, &str) {
    match inputs.split_last() {
        Some((last, rest)) if !rest.is_empty() && !Path::new(last).is_file() => {
            (rest.iter().map(Into::into).collect(), last.as_str())
        }
        _ => (inputs.iter().map(Into::into).collect(), DEFAULT_QUESTION),
    }
}

/// The chat frame around `question` (or `question` itself with --raw-prompt).
fn prompt_for(pipeline: &Pipeline, args: &RunArgs, question: &str, num_images: usize) -> String {
    if args.raw_prompt {
        question.to_string()
    } else {
        pipeline.chat_prompt(question, args.system.as_deref(), num_images)
    }
}

/// Answers every line of `input` into `out`, skipping lines already answered
/// in `out` (so an interrupted batch resumes; failed lines are retried). A
/// bad line or image is recorded as an error line and the batch goes on.
/// A rerun first drops the error records of the lines it retries (replacing
/// `out` atomically), so each line has one record however often it failed.
fn run_batch(pipeline: &Pipeline, args: &RunArgs, input: &Path, out: &Path) -> Result<ExitCode> {
    let (done, kept) = answered_records(out)?;
    if let Some(kept) = kept {
        let tmp = out.with_extension("jsonl.tmp");
        std::fs::write(&tmp, kept).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, out).with_context(|| format!("replacing {}", out.display()))?;
    }
    let reader = std::io::BufReader::new(
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?,
    );
    let lines: Vec<String> = reader
        .lines()
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", input.display()))?;
    let mut writer = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .with_context(|| format!("opening {}", out.display()))?;
    let todo: Vec<(u64, &String)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l))
        .filter(|(n, l)| !l.trim().is_empty() && !done.contains(n))
        .collect();
    let bar = indicatif::ProgressBar::new(todo.len() as u64);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let base = input.parent().unwrap_or(Path::new("."));
    let (mut failures, mut answered) = (0, 0);
    for (line_no, line) in todo {
        let record = match answer_line(pipeline, args, base, line) {
            Ok(mut v) => {
                answered += 1;
                v["line"] = line_no.into();
                v
            }
            Err(e) => {
                failures += 1;
                serde_json::json!({"line": line_no, "error": format!("{e:#}")})
            }
        };
        writeln!(writer, "{record}")?;
        writer.flush()?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "{answered} answered, {} already in {}, {failures} failed",
        done.len(),
        out.display()
    );
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The line numbers answered in `out` and, when `out` also holds error
/// records (or unreadable lines), its text without them.
fn answered_records(out: &Path) -> Result<(HashSet<u64>, Option<String>)> {
    let text = match std::fs::read_to_string(out) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((HashSet::new(), None)),
        Err(e) => return Err(e).with_context(|| format!("reading {}", out.display())),
    };
    let mut done = HashSet::new();
    let mut kept = String::new();
    let mut dropped = false;
    for line in text.lines() {
        let answered = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .filter(|v| v.get("error").is_none())
            .and_then(|v| v.get("line").and_then(|n| n.as_u64()));
        match answered {
            // A line answered twice (two runs at once) keeps its first record.
            Some(n) if done.insert(n) => {
                kept.push_str(line);
                kept.push('\n');
            }
            _ => dropped = true,
        }
    }
    Ok((done, dropped.then_some(kept)))
}

fn answer_line(
    pipeline: &Pipeline,
    args: &RunArgs,
    base: &Path,
    line: &str,
) -> Result<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(line).context("line is not JSON")?;
    let files: Vec<&str> = match (v.get("image"), v.get("images")) {
        (Some(_), Some(_)) => bail!("line has both \"image\" and \"images\""),
        (Some(i), None) => vec![i.as_str().context("\"image\" is not a string")?],
        (None, Some(list)) => list
            .as_array()
            .context("\"images\" is not a list")?
            .iter()
            .map(|i| i.as_str().context("\"images\" holds a non-string"))
            .collect::<Result<_>>()?,
        (None, None) => bail!("line has no \"image\" string or \"images\" list"),
    };
    let question = match v.get("question") {
        None => DEFAULT_QUESTION,
        Some(q) => q.as_str().context("\"question\" is not a string")?,
    };
    let paths: Vec<std::path::PathBuf> = files.iter().map(|f| base.join(f)).collect();
    let images = load_images(pipeline, &paths)?;
    let prompt = prompt_for(pipeline, args, question, images.len());
    let mut params = args.sampling.params(args.max_new_tokens);
    params.completion = args.raw_prompt;
    let output = pipeline.generate(&images, &prompt, &params, false, &mut |_| {})?;
    let mut record = output_json(&output, 0.0);
    if let [one] = files.as_slice() {
        record["image_file"] = (*one).into();
    }
    record["image_files"] = files.into();
    record["question"] = question.into();
    if let Some(id) = v.get("id") {
        record["id"] = id.clone();
    }
    Ok(record)
}
