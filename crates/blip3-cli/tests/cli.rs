//! The `blip3` binary end to end: `dump` + `compare` against a golden (one
//! and two images), error messages at the command line, `init-random --like`
//! and `--base`, and a few-shot run on a base model.

use std::path::PathBuf;
use std::process::Command;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/blip3-tiny")
}

fn blip3() -> Command {
    Command::new(env!("CARGO_BIN_EXE_blip3"))
}

fn temp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("blip3-cli-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&p).ok();
    p
}

#[test]
fn dump_then_compare_passes_on_a_golden_case() {
    let out = temp("dump").with_extension("safetensors");
    let f = fixture();
    let status = blip3()
        .args(["dump", "--model"])
        .arg(f.join("model"))
        .arg("--image")
        .arg(f.join("images/v3_grid2x1_128x64.png"))
        .args([
            "--prompt",
            "Describe the colors and shapes in detail.",
            "--max-new-tokens",
            "8",
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let cmp = blip3()
        .args(["compare", "--golden"])
        .arg(f.join("golden/v3_grid2x1_128x64__q1.safetensors"))
        .arg("--candidate")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&cmp.stdout);
    std::fs::remove_file(&out).ok();
    assert!(cmp.status.success(), "{stdout}");
    assert!(stdout.contains("all tensors pass"), "{stdout}");
    let passing = stdout.lines().filter(|l| l.ends_with("  pass")).count();
    assert_eq!(passing, 9, "{stdout}");
}

#[test]
fn generate_json_reports_ids_stop_reason_and_timings() {
    let f = fixture();
    let out = blip3()
        .args(["generate", "--json", "--max-new-tokens", "8", "--model"])
        .arg(f.join("model"))
        .arg("--image")
        .arg(f.join("images/v1_small_30x20.png"))
        .args(["--prompt", "What is shown in this image?"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ids"], serde_json::json!([22938, 32007]));
    assert_eq!(v["stop_reason"], "end_32007");
    assert!(v["timings"]["ttft_s"].as_f64().unwrap() > 0.0);
    assert!(v["text"].is_string());
}

#[test]
fn bad_inputs_fail_with_a_clear_message() {
    let f = fixture();
    let not_image = temp("notimage").with_extension("png");
    std::fs::write(&not_image, "plain text").unwrap();
    let out = blip3()
        .args(["generate", "--model"])
        .arg(f.join("model"))
        .arg("--image")
        .arg(&not_image)
        .args(["--prompt", "hi"])
        .output()
        .unwrap();
    std::fs::remove_file(&not_image).ok();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("error: reading image") && err.contains("not a supported image"),
        "{err}"
    );

    let out = blip3()
        .args(["generate", "--model", "/nonexistent-model-dir", "--image"])
        .arg(f.join("images/v1_small_30x20.png"))
        .args(["--prompt", "hi"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("/nonexistent-model-dir") && err.contains("neither a model folder"),
        "{err}"
    );

    // An existing folder that is not a model names the missing file.
    let empty = std::env::temp_dir().join(format!("blip3-empty-model-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = blip3()
        .args(["generate", "--model"])
        .arg(&empty)
        .arg("--image")
        .arg(f.join("images/v1_small_30x20.png"))
        .args(["--prompt", "hi"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&empty).ok();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn init_random_like_writes_a_loadable_deterministic_model() {
    let f = fixture();
    let a = temp("rand-a");
    let b = temp("rand-b");
    for dir in [&a, &b] {
        let status = blip3()
            .args(["init-random", "--seed", "5", "--like"])
            .arg(f.join("model"))
            .arg("--out")
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let wa = std::fs::read(a.join("model.safetensors")).unwrap();
    let wb = std::fs::read(b.join("model.safetensors")).unwrap();
    assert_eq!(wa, wb, "same seed, same bytes");
    let st = safetensors::SafeTensors::deserialize(&wa).unwrap();
    assert_eq!(st.len(), 82, "the fixture's 82 tensors");
    let out = blip3()
        .args(["generate", "--json", "--max-new-tokens", "3", "--model"])
        .arg(&a)
        .arg("--image")
        .arg(f.join("images/v4_grid3x1_200x60.png"))
        .args(["--prompt", "What is shown in this image?"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&a).ok();
    std::fs::remove_dir_all(&b).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["images"][0]["num_crops"], 4);
}

#[test]
fn run_answers_like_generate_and_batches_resume() {
    let f = fixture();
    let model = f.join("model");
    let image = f.join("images/v2_grid2x2_100x90.png");
    let generate = blip3()
        .args(["generate", "--model"])
        .arg(&model)
        .arg("--image")
        .arg(&image)
        .args([
            "--prompt",
            "What is shown in this image?",
            "--max-new-tokens",
            "8",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(generate.status.success());
    let expected: serde_json::Value = serde_json::from_slice(&generate.stdout).unwrap();

    // Streamed text equals the answer; --json gives the same object fields.
    let run = blip3()
        .args(["run", "--model"])
        .arg(&model)
        .arg(&image)
        .args(["What is shown in this image?", "--max-new-tokens", "8"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim_end_matches('\n'),
        expected["text"].as_str().unwrap()
    );
    let run_json = blip3()
        .args(["run", "--model"])
        .arg(&model)
        .arg(&image)
        .args([
            "What is shown in this image?",
            "--max-new-tokens",
            "8",
            "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&run_json.stdout).unwrap();
    assert_eq!(v["ids"], expected["ids"]);
    assert_eq!(v["stop_reason"], expected["stop_reason"]);

    // Batch: 3 lines (one bad); rerunning skips the answered ones.
    let dir = std::env::temp_dir().join(format!("blip3-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.jsonl");
    let out = dir.join("out.jsonl");
    std::fs::write(
        &input,
        format!(
            "{{\"image\": \"{}\", \"question\": \"What is shown in this image?\", \"id\": \"a\"}}\n\
             {{\"image\": \"missing.png\"}}\n\
             {{\"image\": \"{}\"}}\n",
            image.display(),
            f.join("images/v1_small_30x20.png").display()
        ),
    )
    .unwrap();
    let batch = |expect_ok: bool| {
        let o = blip3()
            .args(["run", "--model"])
            .arg(&model)
            .args(["--max-new-tokens", "8", "--batch"])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(
            o.status.success(),
            expect_ok,
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    batch(false); // the missing image fails its line, the others are answered
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["ids"], expected["ids"]);
    assert_eq!(lines[0]["id"], "a");
    assert!(lines[1]["error"].as_str().unwrap().contains("missing.png"));
    // Resume: answered lines are skipped; only the failed line is retried,
    // and its old error record is replaced, not repeated.
    for _ in 0..2 {
        let log = batch(false);
        assert!(log.contains("0 answered, 2 already"), "{log}");
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert_eq!(text.matches("\"error\"").count(), 1, "{text}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn v15() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/xgenmm-v15-tiny")
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn dump_with_two_images_passes_the_v15_golden() {
    let f = v15();
    let out = temp("dump2").with_extension("safetensors");
    let status = blip3()
        .args(["dump", "--model"])
        .arg(f.join("model"))
        .arg("--image")
        .arg(f.join("images/v6_two_grid2x2_333x250_tall2_50x90_a.png"))
        .arg("--image")
        .arg(f.join("images/v6_two_grid2x2_333x250_tall2_50x90_b.png"))
        .args([
            "--prompt",
            "Describe both pictures.",
            "--max-new-tokens",
            "10",
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let cmp = blip3()
        .args(["compare", "--golden"])
        .arg(f.join("golden/v6_two_grid2x2_333x250_tall2_50x90.safetensors"))
        .arg("--candidate")
        .arg(&out)
        .output()
        .unwrap();
    std::fs::remove_file(&out).ok();
    let stdout = String::from_utf8_lossy(&cmp.stdout);
    assert!(cmp.status.success(), "{stdout}");
    for name in ["vision_attn_mask", "image_token_counts", "generated_ids"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(name) && l.ends_with("pass")),
            "{stdout}"
        );
    }
}

#[test]
fn generate_and_run_take_several_images() {
    let f = v15();
    let (a, b) = (
        f.join("images/v5_two_wide3_420x130_small_40x25_a.png"),
        f.join("images/v5_two_wide3_420x130_small_40x25_b.png"),
    );
    let question = "What is different between the two images?";
    let generate = json_of(
        &blip3()
            .args(["generate", "--json", "--max-new-tokens", "10", "--model"])
            .arg(f.join("model"))
            .arg("--image")
            .arg(&a)
            .arg("--image")
            .arg(&b)
            .args(["--prompt", question])
            .output()
            .unwrap(),
    );
    assert_eq!(generate["ids"], serde_json::json!([7352, 8745, 32007]));
    assert_eq!(generate["image_token_counts"], serde_json::json!([32, 24]));
    let run = json_of(
        &blip3()
            .args(["run", "--json", "--max-new-tokens", "10", "--model"])
            .arg(f.join("model"))
            .arg(&a)
            .arg(&b)
            .arg(question)
            .output()
            .unwrap(),
    );
    assert_eq!(run["ids"], generate["ids"]);
    // A batch line with "images" answers the same.
    let dir = temp("batch2");
    std::fs::create_dir_all(&dir).unwrap();
    let line = serde_json::json!({"images": [a, b], "question": question, "id": 7});
    std::fs::write(dir.join("in.jsonl"), format!("{line}\n")).unwrap();
    let status = blip3()
        .args(["run", "--max-new-tokens", "10", "--model"])
        .arg(f.join("model"))
        .arg("--batch")
        .arg(dir.join("in.jsonl"))
        .arg("--out")
        .arg(dir.join("out.jsonl"))
        .status()
        .unwrap();
    assert!(status.success());
    let answer: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(dir.join("out.jsonl"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(answer["ids"], generate["ids"]);
    assert_eq!(answer["id"], 7);
    // One image too few for the markers of a raw prompt: a clear error.
    let out = blip3()
        .args(["generate", "--raw-prompt", "--model"])
        .arg(f.join("model"))
        .arg("--image")
        .arg(&a)
        .args(["--prompt", "<image> <image> two?"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 <image> token(s) but 1 image(s)"), "{err}");
}

#[test]
fn fewshot_runs_on_a_base_model_made_by_init_random() {
    let f = fixture();
    let base = temp("base");
    let status = blip3()
        .args(["init-random", "--base", "--seed", "3", "--like"])
        .arg(f.join("model"))
        .arg("--out")
        .arg(&base)
        .status()
        .unwrap();
    assert!(status.success());
    let st = std::fs::read(base.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st).unwrap();
    assert_eq!(
        st.len(),
        78,
        "the fixture's 82 tensors less text_projection"
    );
    assert!(st.names().iter().all(|n| !n.contains("text_projection")));

    let demos = base.join("demos.jsonl");
    let images = f.join("images");
    let line = |img: &str, q: &str, a: &str| {
        serde_json::json!({"image": images.join(img), "question": q, "answer": a}).to_string()
    };
    std::fs::write(
        &demos,
        [
            line("v1_small_30x20.png", "What color is it?", "red"),
            line("v3_grid2x1_128x64.png", "How many shapes?", "two"),
            line("v4_grid3x1_200x60.png", "Is it wide?", "yes"),
        ]
        .join("\n"),
    )
    .unwrap();
    let query = f.join("images/v2_grid2x2_100x90.png");
    let few = json_of(
        &blip3()
            .args([
                "fewshot",
                "--json",
                "--task",
                "vqa",
                "--shots",
                "2",
                "--placeholders",
            ])
            .args([
                "--question",
                "What is this?",
                "--repetition-penalty",
                "2.0",
                "--model",
            ])
            .arg(&base)
            .arg("--demos")
            .arg(&demos)
            .arg("--image")
            .arg(&query)
            .output()
            .unwrap(),
    );
    assert_eq!(few["shots"], 2);
    // One squashed crop (Q = 8 tokens) per image, demonstrations first.
    assert_eq!(few["image_token_counts"], serde_json::json!([8, 8, 8]));
    let prompt = few["prompt"].as_str().unwrap();
    assert!(prompt.starts_with("<image><image placeholder>"), "{prompt}");
    assert_eq!(prompt.matches("<image placeholder>").count(), 3 * 7);
    assert!(
        prompt.ends_with("<image>Question:What is this? Short answer:")
            || prompt.ends_with("<image placeholder>Question:What is this? Short answer:"),
        "{prompt}"
    );
    let stop = few["stop_reason"].as_str().unwrap();
    assert!(
        ["eos_32000", "eos_32014", "max_new_tokens"].contains(&stop),
        "{stop}"
    );
    assert!(few["ids"].as_array().unwrap().len() <= 5);

    // The same prompt through `generate --raw-prompt` gives the same ids: a
    // base model runs one squashed crop per image by default.
    let mut cmd = blip3();
    cmd.args(["generate", "--json", "--raw-prompt"])
        .args([
            "--max-new-tokens",
            "5",
            "--repetition-penalty",
            "2.0",
            "--model",
        ])
        .arg(&base)
        .args(["--prompt", prompt]);
    for img in ["v1_small_30x20.png", "v3_grid2x1_128x64.png"] {
        cmd.arg("--image").arg(images.join(img));
    }
    let same = json_of(&cmd.arg("--image").arg(&query).output().unwrap());
    std::fs::remove_dir_all(&base).ok();
    assert_eq!(same["ids"], few["ids"]);
    assert_eq!(same["image_token_counts"], serde_json::json!([8, 8, 8]));
}

#[test]
fn v15_bf16_checkpoint_from_init_random_loads_and_runs_two_images() {
    // The interleave checkpoint ships BF16: a BF16 v1.5 folder in the real
    // layout (SigLIP head included) loads as stored and answers.
    let f = v15();
    let dir = temp("v15-bf16");
    let status = blip3()
        .args(["init-random", "--dtype", "bf16", "--seed", "2", "--like"])
        .arg(f.join("model"))
        .arg("--out")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), 94, "the fixture's 94 tensors");
    assert!(st
        .tensors()
        .iter()
        .all(|(_, t)| t.dtype() == safetensors::Dtype::BF16));
    assert!(st
        .names()
        .iter()
        .any(|n| n.starts_with("vlm.vision_encoder.head.")));
    // As stored (BF16 weights, BF16 products where the CPU has them) against
    // the same weights widened to F32: every stage within the BF16 bound
    // (2e-2 of the peak, as in the engine's format test), from the same bytes.
    let images = [
        f.join("images/v4_grid2x2_200x150.png"),
        f.join("images/v1_tall3_30x200.png"),
    ];
    let dump = |dtype: &str, out: &PathBuf| {
        let mut cmd = blip3();
        cmd.args(["dump", "--max-new-tokens", "4", "--dtype", dtype, "--model"])
            .arg(&dir)
            .args(["--prompt", "Describe both pictures.", "--out"])
            .arg(out);
        for image in &images {
            cmd.arg("--image").arg(image);
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "dump --dtype {dtype}");
    };
    let (stored, widened) = (dir.join("stored.safetensors"), dir.join("f32.safetensors"));
    dump("auto", &stored);
    dump("f32", &widened);
    let cmp = blip3()
        .args(["compare", "--rel-tol", "0.02", "--golden"])
        .arg(&widened)
        .arg("--candidate")
        .arg(&stored)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let stdout = String::from_utf8_lossy(&cmp.stdout);
    for name in [
        "image_token_counts",
        "input_ids",
        "pixel_values",
        "vision_tokens",
        "inputs_embeds",
        "last_logits",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{name} ")) && l.ends_with("pass")),
            "{name}: {stdout}"
        );
    }
}
