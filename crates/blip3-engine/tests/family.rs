//! The family seam and several images per prompt: the xGen-MM v1.5 goldens
//! of `testdata/xgenmm-v15-tiny` (two-image cases included), three-image
//! prompts, count mismatches and the r-v1 first-image-only mode.

use std::path::{Path, PathBuf};

use blip3_engine::parity::{compare, write_dump, DumpInfo, FIXTURE_REL_TOL};
use blip3_engine::{Family, Pipeline, PipelineOptions, SpliceMode};
use blip3_preprocess::RgbImage;
use candle_core::Tensor;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

fn images(p: &Pipeline, dir: &Path, files: &[&str]) -> Vec<RgbImage> {
    files
        .iter()
        .map(|f| p.load_image(&dir.join(f)).unwrap())
        .collect()
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2().unwrap()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0f32, f32::max)
}

#[test]
fn v15_golden_cases_match_the_reference() {
    let dir = testdata("xgenmm-v15-tiny");
    let p = Pipeline::load(&dir.join("model"), &PipelineOptions::default()).unwrap();
    assert_eq!(p.family(), Family::XgenmmV15);
    assert!(p.masks_padding());
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    let out_dir = std::env::temp_dir().join(format!("blip3-v15-golden-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let files: Vec<&str> = case["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let imgs = images(&p, &dir, &files);
        let prompt = p.chat_prompt(case["question"].as_str().unwrap(), None, imgs.len());
        let max_new = case["max_new_tokens"].as_u64().unwrap() as usize;
        let out = p.run(&imgs, &prompt, max_new, true, &mut |_| {}).unwrap();
        let want: Vec<u32> = case["generated_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(out.generated_ids, want, "{id}");
        assert_eq!(
            out.stop_reason.label(),
            case["stop_reason"].as_str().unwrap(),
            "{id}"
        );
        let counts: Vec<usize> = case["image_token_counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(out.image_token_counts, counts, "{id}");
        let path = out_dir.join(format!("{id}.safetensors"));
        write_dump(&path, &out, &DumpInfo::default()).unwrap();
        let golden = std::fs::read(dir.join(case["golden"].as_str().unwrap())).unwrap();
        let reports = compare(&std::fs::read(&path).unwrap(), &golden, FIXTURE_REL_TOL).unwrap();
        assert!(
            reports.len() >= 10,
            "{id}: every golden tensor was compared"
        );
        for r in reports.iter().filter(|r| !r.pass) {
            failures.push(format!(
                "{id}: {} {:.3e} > {:.3e} {}",
                r.name, r.max_abs, r.limit, r.note
            ));
        }
    }
    std::fs::remove_dir_all(&out_dir).ok();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn three_images_splice_in_order_each_as_when_alone() {
    // The perceiver sees each crop on its own, so an image's visual tokens do
    // not depend on its neighbours; every <image> gets its own rows, in order.
    let dir = testdata("xgenmm-v15-tiny");
    let p = Pipeline::load(&dir.join("model"), &PipelineOptions::default()).unwrap();
    let files = [
        "images/v2_wide2_100x30.png",
        "images/v1_tall3_30x200.png",
        "images/v6_two_grid2x2_333x250_tall2_50x90_b.png",
    ];
    let imgs = images(&p, &dir, &files);
    let prompt = p.chat_prompt("Compare the three pictures.", None, 3);
    let out = p.run(&imgs, &prompt, 2, true, &mut |_| {}).unwrap();
    let stages = out.stages.unwrap();
    assert_eq!(out.image_token_counts, vec![24, 32, 24]);
    let q = 8;
    let t = out.input_ids.len();
    assert_eq!(stages.inputs_embeds.dims()[0], t - 3 + 80);
    assert_eq!(stages.vision_attn_mask.as_ref().unwrap().dims(), &[10, 16]);
    let embeds = rows(&stages.inputs_embeds);
    let tokens = rows(&stages.vision_tokens);
    let positions: Vec<usize> = out
        .input_ids
        .iter()
        .enumerate()
        .filter(|(_, &id)| id == p.image_token_id())
        .map(|(i, _)| i)
        .collect();
    let (mut shift, mut row) = (0, 0);
    for (k, (&pos, &count)) in positions.iter().zip(&out.image_token_counts).enumerate() {
        let at = pos + shift;
        assert_eq!(
            max_diff(&embeds[at..at + count], &tokens[row..row + count]),
            0.0,
            "image {k}"
        );
        // The same image alone gives the same rows.
        let alone = p
            .run(
                &imgs[k..=k],
                &p.chat_prompt("x", None, 1),
                1,
                true,
                &mut |_| {},
            )
            .unwrap();
        let alone = rows(&alone.stages.unwrap().vision_tokens);
        assert!(
            max_diff(&alone, &tokens[row..row + count]) < 1e-5,
            "image {k}"
        );
        assert_eq!(count, out.images[k].num_crops * q);
        shift += count - 1;
        row += count;
    }
}

#[test]
fn image_count_mismatches_are_clear_errors() {
    let dir = testdata("xgenmm-v15-tiny");
    let p = Pipeline::load(&dir.join("model"), &PipelineOptions::default()).unwrap();
    let imgs = images(&p, &dir, &["images/v1_tall3_30x200.png"]);
    let two_markers = p.chat_prompt("Q", None, 2);
    let err = p
        .run(&imgs, &two_markers, 1, false, &mut |_| {})
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("2 <image> token(s) but 1 image(s)"),
        "{err}"
    );
    let twice = [imgs[0].clone(), imgs[0].clone()];
    let one_marker = p.chat_prompt("Q", None, 1);
    let err = p
        .run(&twice, &one_marker, 1, false, &mut |_| {})
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("1 <image> token(s) but 2 image(s)"),
        "{err}"
    );
}

#[test]
fn first_image_only_reproduces_the_r1_reference() {
    // r-v1 instruct splices only the first <image>; a later one stays an
    // ordinary token (its `additional_embedding` row).
    let dir = testdata("blip3-tiny");
    let options = PipelineOptions {
        splice: SpliceMode::FirstOnly,
        ..Default::default()
    };
    let p = Pipeline::load(&dir.join("model"), &options).unwrap();
    assert_eq!(p.family(), Family::Blip3R1);
    assert!(!p.masks_padding());
    let imgs = images(&p, &dir, &["images/v2_grid2x2_100x90.png"]);
    let prompt = p.chat_prompt("What is <image> here?", None, 1);
    let out = p.run(&imgs, &prompt, 1, true, &mut |_| {}).unwrap();
    let stages = out.stages.unwrap();
    let t = out.input_ids.len();
    let spliced = out.image_token_counts[0];
    assert_eq!(stages.inputs_embeds.dims()[0], t - 1 + spliced);
    let text = rows(&p.model().lm().embed(&out.input_ids).unwrap());
    let second = out
        .input_ids
        .iter()
        .enumerate()
        .filter(|(_, &id)| id == p.image_token_id())
        .nth(1)
        .unwrap()
        .0;
    let embeds = rows(&stages.inputs_embeds);
    let at = second - 1 + spliced;
    assert_eq!(max_diff(&embeds[at..=at], &text[second..=second]), 0.0);
    // Every-image mode refuses the same request: one image, two <image>.
    let every = Pipeline::load(&dir.join("model"), &PipelineOptions::default()).unwrap();
    assert!(every.run(&imgs, &prompt, 1, false, &mut |_| {}).is_err());
}
