//! The `blip3` binary end to end: `dump` + `compare` against a golden, error
//! messages at the command line, and `init-random --like`.

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
    assert_eq!(v["image"]["num_crops"], 4);
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
    // Resume: answered lines are skipped; only the failed line is retried.
    let log = batch(false);
    assert!(log.contains("0 answered, 2 already"), "{log}");
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 4);
    std::fs::remove_dir_all(&dir).ok();
}
