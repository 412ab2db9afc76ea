//! `blip3 eval` end to end on the tiny fixture models over the synthetic
//! datasets in `testdata/eval/datasets` (one per public format), resuming,
//! the report, and `blip3 score` agreeing with the run's own scores.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn datasets() -> PathBuf {
    root().join("testdata/eval/datasets")
}

fn images() -> PathBuf {
    root().join("testdata/blip3-tiny/images")
}

fn blip3(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blip3"))
        .args(args)
        .output()
        .expect("blip3 runs")
}

fn temp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("blip3-eval-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&p).ok();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count()
}

/// A random-weight r-v1 base model shaped like the tiny fixture.
fn base_model(dir: &Path) -> PathBuf {
    let model = dir.join("base-model");
    ok(&blip3(&[
        "init-random",
        "--like",
        s(&root().join("testdata/blip3-tiny/model")),
        "--base",
        "--out",
        s(&model),
    ]));
    model
}

/// `blip3 score` on the run's predictions and references gives the run's metrics.
fn rescored(out: &Path, scorer: &str) -> Value {
    let scored = blip3(&[
        "score",
        "--task",
        scorer,
        "--pred",
        s(&out.join("predictions.jsonl")),
        "--ref",
        s(&out.join("references.json")),
        "--json",
    ]);
    ok(&scored);
    serde_json::from_slice(&scored.stdout).unwrap()
}

#[test]
fn few_shot_captioning_runs_resumes_and_scores() {
    let dir = temp("coco");
    let model = base_model(&dir);
    let out = dir.join("run");
    let (data, images) = (datasets().join("captions_karpathy.json"), images());
    let args = [
        "eval",
        "--model",
        s(&model),
        "--task",
        "coco",
        "--data",
        s(&data),
        "--images",
        s(&images),
        "--shots",
        "2",
        "--query-set-size",
        "4",
        "--max-new-tokens",
        "4",
        "--batch",
        "3",
        "--out",
        s(&out),
    ];
    ok(&blip3(&args));
    let predictions = out.join("predictions.jsonl");
    assert_eq!(lines(&predictions), 4);
    let results = json(&out.join("results.json"));
    assert_eq!(results["settings"]["shots"], 2);
    assert_eq!(results["settings"]["task"], "coco");
    assert!(
        results["settings"]["model_revision"]
            .as_str()
            .unwrap()
            .len()
            >= 16
    );
    let cider = results["metrics"]["CIDEr"].as_f64().unwrap();
    assert_eq!(rescored(&out, "cider")["CIDEr"].as_f64().unwrap(), cider);
    // A rerun resumes: nothing is asked again.
    ok(&blip3(&args));
    assert_eq!(lines(&predictions), 4);
    // Other settings in the same folder are refused rather than mixed.
    let mut other = args.to_vec();
    assert_eq!(other[9], "--shots");
    other[10] = "1";
    let refused = blip3(&other);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("shots: was 2, now 1"));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| model | shots | COCO | NoCaps |"), "{md}");
    assert!(out.join("report.html").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn few_shot_vqa_from_question_and_annotation_files() {
    let dir = temp("vqa");
    let model = base_model(&dir);
    let out = dir.join("run");
    ok(&blip3(&[
        "eval",
        "--model",
        s(&model),
        "--task",
        "vqav2",
        "--data",
        s(&datasets().join("vqa_val_questions.json")),
        "--train",
        s(&datasets().join("vqa_train_questions.json")),
        "--images",
        s(&images()),
        "--train-images",
        s(&images()),
        "--query-set-size",
        "4",
        "--out",
        s(&out),
    ]));
    assert_eq!(lines(&out.join("predictions.jsonl")), 3);
    let results = json(&out.join("results.json"));
    // Zero shots: OpenFlamingo's two text-only demonstrations.
    assert_eq!(results["settings"]["zero_shot_text_demos"], true);
    let accuracy = results["metrics"]["accuracy"].as_f64().unwrap();
    assert_eq!(
        rescored(&out, "vqa")["accuracy"].as_f64().unwrap(),
        accuracy
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn vlmevalkit_benchmarks_run_on_the_instruct_model() {
    let dir = temp("tsv");
    let model = root().join("testdata/blip3-tiny/model");
    for (task, scorer, items, column) in [
        ("mmbench", "mmbench", 8, "Overall"),
        ("mme", "mme", 28, "total"),
        ("pope", "pope", 6, "Overall"),
        ("mmmu", "mmmu", 2, "Overall"),
    ] {
        let out = dir.join(task);
        let data = datasets().join(format!("{task}.tsv"));
        let mut args = vec![
            "eval",
            "--model",
            s(&model),
            "--task",
            task,
            "--data",
            s(&data),
            "--max-new-tokens",
            "3",
            "--out",
            s(&out),
        ];
        // The synthetic files are not VLMEvalKit's: the MD5 check refuses them.
        let refused = blip3(&args);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("MD5"));
        args.push("--no-md5-check");
        ok(&blip3(&args));
        assert_eq!(lines(&out.join("predictions.jsonl")), items, "{task}");
        let results = json(&out.join("results.json"));
        assert_eq!(results["failed"], 0, "{task}");
        let ours = &results["metrics"][column];
        assert!(ours.is_number(), "{task}: {results}");
        assert_eq!(&rescored(&out, scorer)[column], ours, "{task}");
        // The TSV itself as --ref gives the same numbers.
        let from_tsv = blip3(&[
            "score",
            "--task",
            scorer,
            "--pred",
            s(&out.join("predictions.jsonl")),
            "--ref",
            s(&data),
            "--json",
        ]);
        ok(&from_tsv);
        let from_tsv: Value = serde_json::from_slice(&from_tsv.stdout).unwrap();
        assert_eq!(&from_tsv[column], ours, "{task}");
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(html.contains("<table>"), "{task}");
    }
    assert!(std::fs::read_to_string(dir.join("mme/report.html"))
        .unwrap()
        .contains("<svg"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_arguments_are_named() {
    let out = blip3(&[
        "eval", "--model", "x", "--task", "imagenet", "--data", "x", "--out", "x",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown task \"imagenet\""));
    let out = blip3(&[
        "score",
        "--task",
        "bleu",
        "--pred",
        "/nonexistent",
        "--ref",
        "/nonexistent",
    ]);
    assert!(!out.status.success());
    let dir = temp("score");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.jsonl"), "{\"id\": 1, \"answer\": \"a dog\"}\n").unwrap();
    std::fs::write(dir.join("r.json"), "{\"2\": [\"a cat\"]}").unwrap();
    let out = blip3(&[
        "score",
        "--task",
        "cider",
        "--pred",
        s(&dir.join("p.jsonl")),
        "--ref",
        s(&dir.join("r.json")),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains('1'));
    std::fs::remove_dir_all(&dir).ok();
}

/// A loopback OpenAI-compatible judge answering `replies` in turn (then
/// "1.0"); returns its base URL and the prompts it was sent.
fn fake_judge(replies: Vec<&'static str>) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut replies = replies.into_iter();
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).ok();
            tx.send(String::from_utf8_lossy(&body).into_owned()).ok();
            let reply = replies.next().unwrap_or("1.0");
            let json = serde_json::json!({"choices": [{"message": {"role": "assistant", "content": reply}}]})
                .to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                json.len()
            );
        }
    });
    (url, rx)
}

#[test]
fn judge_benchmarks_need_a_judge_and_use_the_one_given() {
    let dir = temp("judge");
    let model = root().join("testdata/blip3-tiny/model");
    let data = datasets().join("mmvet.tsv");
    let base = [
        "eval",
        "--model",
        s(&model),
        "--task",
        "mmvet",
        "--data",
        s(&data),
        "--no-md5-check",
        "--max-new-tokens",
        "2",
    ];
    let out = dir.join("nojudge");
    let mut args = base.to_vec();
    args.extend(["--out", s(&out)]);
    let run = blip3(&args);
    ok(&run);
    assert!(String::from_utf8_lossy(&run.stdout).contains("MM-Vet: needs a judge (--judge-url)"));
    assert!(std::fs::read_to_string(out.join("report.md"))
        .unwrap()
        .contains("needs a judge"));

    // Item 0: an unparsable reply, then 0.5; items 1 and 2: 1.0.
    let (url, prompts) = fake_judge(vec!["not sure", "0.5"]);
    let out = dir.join("judged");
    let mut args = base.to_vec();
    args.extend([
        "--judge-url",
        &url,
        "--judge-model",
        "fake",
        "--out",
        s(&out),
    ]);
    let run = blip3(&args);
    ok(&run);
    let results = json(&out.join("results.json"));
    let score = results["metrics"]["score"].as_f64().unwrap();
    assert!((score - 250.0 / 3.0).abs() < 1e-9, "{results}");
    assert_eq!(results["metrics"]["categories"]["math"], 100.0);
    let sent: Vec<String> = prompts.try_iter().collect();
    assert_eq!(sent.len(), 4, "one retry");
    assert!(sent[0].contains("red <AND> green") && sent[0].contains("\"model\":\"fake\""));
    std::fs::remove_dir_all(&dir).ok();
}
