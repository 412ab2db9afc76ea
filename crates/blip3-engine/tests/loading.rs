//! Checkpoint loading paths and bad-input errors: sharded folders, half-precision
//! weights, optional `lm_head.bias`, and clear messages for broken inputs.

use std::path::{Path, PathBuf};

use blip3_engine::parity::{compare, read_f32, write_dump, DumpInfo, HostTensor, FIXTURE_REL_TOL};
use blip3_engine::prompt::instruct_prompt;
use blip3_engine::{Pipeline, PipelineOptions};
use safetensors::{Dtype, SafeTensors};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/blip3-tiny")
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("blip3-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies the fixture model to a new folder, passing every tensor through `edit`
/// (None drops it) and splitting the weights into `shards` files.
fn rewrite_model(
    tag: &str,
    shards: usize,
    edit: impl Fn(&str, HostTensor) -> Option<HostTensor>,
) -> PathBuf {
    let src = fixture().join("model");
    let dst = temp_dir(tag);
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path
            .extension()
            .is_some_and(|e| e == "json" || e == "model")
        {
            std::fs::copy(&path, dst.join(path.file_name().unwrap())).unwrap();
        }
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let tensors: Vec<(String, HostTensor)> = names
        .into_iter()
        .filter_map(|name| {
            let v = st.tensor(&name).unwrap();
            let owned = HostTensor {
                dtype: v.dtype(),
                shape: v.shape().to_vec(),
                bytes: v.data().to_vec(),
            };
            edit(&name, owned).map(|o| (name, o))
        })
        .collect();
    if shards == 1 {
        let items: Vec<(&str, &HostTensor)> =
            tensors.iter().map(|(n, o)| (n.as_str(), o)).collect();
        safetensors::serialize_to_file(items, None, &dst.join("model.safetensors")).unwrap();
    } else {
        let per = tensors.len().div_ceil(shards);
        let mut map = serde_json::Map::new();
        for (k, chunk) in tensors.chunks(per).enumerate() {
            let file = format!("model-{:05}-of-{:05}.safetensors", k + 1, shards);
            let items: Vec<(&str, &HostTensor)> =
                chunk.iter().map(|(n, o)| (n.as_str(), o)).collect();
            safetensors::serialize_to_file(items, None, &dst.join(&file)).unwrap();
            for (n, _) in chunk {
                map.insert(n.clone(), serde_json::Value::String(file.clone()));
            }
        }
        let index = serde_json::json!({"metadata": {}, "weight_map": map});
        std::fs::write(dst.join("model.safetensors.index.json"), index.to_string()).unwrap();
    }
    dst
}

fn f32_to(dtype: Dtype, o: HostTensor) -> HostTensor {
    let vals = o
        .bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let bytes = match dtype {
        Dtype::BF16 => vals
            .flat_map(|v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::F16 => vals
            .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        _ => unreachable!(),
    };
    HostTensor {
        dtype,
        shape: o.shape,
        bytes,
    }
}

const CASE_IMAGE: &str = "images/v2_grid2x2_100x90.png";
const CASE_GOLDEN: &str = "golden/v2_grid2x2_100x90__q0.safetensors";
const QUESTION: &str = "What is shown in this image?";

/// Runs the v2/q0 case on `model` with stage capture.
fn run_case(model: &Path, max_new_tokens: usize) -> blip3_engine::RunOutput {
    let pipeline = Pipeline::load(model, &PipelineOptions::default()).unwrap();
    let image = pipeline.load_image(&fixture().join(CASE_IMAGE)).unwrap();
    let prompt = instruct_prompt(QUESTION, None);
    pipeline
        .run(
            std::slice::from_ref(&image),
            &prompt,
            max_new_tokens,
            true,
            &mut |_| {},
        )
        .unwrap()
}

/// Runs the v2/q0 case on `model` and compares with its golden at `rel_tol`.
fn parity_failures(model: &Path, rel_tol: f64, tensors: &[&str]) -> Vec<String> {
    let output = run_case(model, 8);
    let out = model.join("dump.safetensors");
    write_dump(&out, &output, &DumpInfo::default()).unwrap();
    let golden = std::fs::read(fixture().join(CASE_GOLDEN)).unwrap();
    compare(&std::fs::read(out).unwrap(), &golden, rel_tol)
        .unwrap()
        .into_iter()
        .filter(|r| tensors.contains(&r.name.as_str()) && !r.pass)
        .map(|r| format!("{}: max_abs {:.3e} > {:.3e}", r.name, r.max_abs, r.limit))
        .collect()
}

const ALL: &[&str] = &[
    "input_ids",
    "pixel_values",
    "vision_features",
    "vision_tokens",
    "inputs_embeds",
    "last_logits",
    "generated_ids",
];

#[test]
fn sharded_checkpoint_gives_identical_results() {
    let dir = rewrite_model("sharded", 3, |_, o| Some(o));
    assert!(dir.join("model.safetensors.index.json").exists());
    let failures = parity_failures(&dir, FIXTURE_REL_TOL, ALL);
    std::fs::remove_dir_all(&dir).ok();
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn half_precision_checkpoints_load_and_stay_close() {
    // BF16/F16 storage rounds every weight; activations stay F32. The deviation
    // stays within 2% of each tensor's peak (vs 0.1% for F32 weights).
    for (tag, dtype) in [("bf16", Dtype::BF16), ("f16", Dtype::F16)] {
        let dir = rewrite_model(tag, 1, |_, o| Some(f32_to(dtype, o)));
        let failures = parity_failures(
            &dir,
            2e-2,
            &[
                "vision_features",
                "vision_tokens",
                "inputs_embeds",
                "last_logits",
            ],
        );
        std::fs::remove_dir_all(&dir).ok();
        assert!(failures.is_empty(), "{tag}: {failures:?}");
    }
}

fn load_error(dir: &Path) -> String {
    match Pipeline::load(dir, &PipelineOptions::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_tensor_is_named() {
    let dir = rewrite_model("missing", 1, |n, o| {
        (n != "vlm.vision_tokenizer.latents").then_some(o)
    });
    let msg = load_error(&dir);
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        msg.contains("missing tensor vlm.vision_tokenizer.latents"),
        "{msg}"
    );
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn wrong_shape_is_named() {
    let dir = rewrite_model("shape", 1, |n, mut o| {
        if n == "vlm.lang_model.model.norm.weight" {
            o.shape = vec![95];
            o.bytes.truncate(95 * 4);
        }
        Some(o)
    });
    let msg = load_error(&dir);
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        msg.contains("vlm.lang_model.model.norm.weight")
            && msg.contains("[95]")
            && msg.contains("[96]"),
        "{msg}"
    );
}

#[test]
fn unsupported_dtype_is_named() {
    let dir = rewrite_model("dtype", 1, |n, mut o| {
        if n == "vlm.vision_encoder.ln_pre.bias" {
            o.dtype = Dtype::I32;
        }
        Some(o)
    });
    let msg = load_error(&dir);
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        msg.contains("vlm.vision_encoder.ln_pre.bias") && msg.contains("unsupported dtype I32"),
        "{msg}"
    );
}

#[test]
fn wrong_model_type_is_rejected() {
    let dir = rewrite_model("modeltype", 1, |_, o| Some(o));
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"blip_3\"", "\"llava\""),
    )
    .unwrap();
    let msg = load_error(&dir);
    std::fs::remove_dir_all(&dir).ok();
    assert!(msg.contains("model_type is \"llava\""), "{msg}");
}

#[test]
fn missing_weights_file_is_reported() {
    let dir = rewrite_model("noweights", 1, |_, o| Some(o));
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let msg = load_error(&dir);
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        msg.contains("no weights in") && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn absent_lm_head_bias_means_zero_bias() {
    // Without the bias the logits are the golden's minus the (known) bias.
    let dir = rewrite_model("nobias", 1, |n, o| {
        (n != "vlm.lang_model.lm_head.bias").then_some(o)
    });
    let out = run_case(&dir, 1);
    let logits: Vec<f32> = out.stages.unwrap().last_logits.to_vec1().unwrap();
    let model_bytes = std::fs::read(fixture().join("model/model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&model_bytes).unwrap();
    let bias = st.tensor("vlm.lang_model.lm_head.bias").unwrap();
    let bias = read_f32(&bias).unwrap();
    let golden_bytes = std::fs::read(fixture().join(CASE_GOLDEN)).unwrap();
    let golden = SafeTensors::deserialize(&golden_bytes).unwrap();
    let gl = golden.tensor("last_logits").unwrap();
    let gl = read_f32(&gl).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let worst = (0..32012)
        .map(|i| (logits[i] - (gl[i] - bias[i])).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "max deviation {worst}");
}

fn image_error(bytes: &[u8], max_pixels: u64) -> String {
    match blip3_preprocess::decode::decode_bytes(bytes, max_pixels) {
        Ok(_) => panic!("decoding should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn corrupt_and_non_image_inputs_have_clear_errors() {
    let png = std::fs::read(fixture().join(CASE_IMAGE)).unwrap();
    let msg = image_error(&png[..png.len() / 2], u64::MAX);
    assert!(msg.contains("corrupt or truncated image"), "{msg}");
    let msg = image_error(b"this is a text file, not an image\n", u64::MAX);
    assert!(msg.contains("not a supported image"), "{msg}");
    let msg = image_error(&[], u64::MAX);
    assert!(msg.contains("not a supported image"), "{msg}");
}

#[test]
fn oversized_images_are_rejected_before_decoding() {
    // A real 100×90 PNG above a 5000-pixel limit.
    let png = std::fs::read(fixture().join(CASE_IMAGE)).unwrap();
    let msg = image_error(&png, 5000);
    assert!(
        msg.contains("100x90 = 9000 pixels, above the limit of 5000"),
        "{msg}"
    );
    // A 54-byte BMP header claiming 20000×20000 pixels: rejected from the header.
    let mut bmp = Vec::new();
    bmp.extend_from_slice(b"BM");
    bmp.extend_from_slice(&(54u32).to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&(54u32).to_le_bytes());
    bmp.extend_from_slice(&(40u32).to_le_bytes());
    bmp.extend_from_slice(&(20_000i32).to_le_bytes());
    bmp.extend_from_slice(&(20_000i32).to_le_bytes());
    bmp.extend_from_slice(&(1u16).to_le_bytes());
    bmp.extend_from_slice(&(24u16).to_le_bytes());
    bmp.extend_from_slice(&[0; 24]);
    let msg = image_error(&bmp, blip3_preprocess::decode::DEFAULT_MAX_PIXELS);
    assert!(
        msg.contains("20000x20000") && msg.contains("above the limit"),
        "{msg}"
    );
}

#[test]
fn feature_fingerprint_names_weights_format_and_aspect() {
    use blip3_model::weights::{Quantization, WeightDtype};
    use blip3_preprocess::AspectMode;
    let model = fixture().join("model");
    let load = |options: PipelineOptions| {
        Pipeline::load(&model, &options)
            .unwrap()
            .feature_fingerprint()
            .to_string()
    };
    let default = load(PipelineOptions::default());
    // Stable: a hex SHA-256, the same on every load.
    assert_eq!(default.len(), 64);
    assert!(default.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(load(PipelineOptions::default()), default);
    let others = [
        PipelineOptions {
            quantization: Some(Quantization::Q4_0),
            ..PipelineOptions::default()
        },
        PipelineOptions {
            weight_dtype: WeightDtype::Bf16,
            ..PipelineOptions::default()
        },
        PipelineOptions {
            aspect: Some(AspectMode::Pad),
            ..PipelineOptions::default()
        },
    ];
    for options in others {
        let other = load(options.clone());
        assert_ne!(other, default, "{options:?}");
    }
}
