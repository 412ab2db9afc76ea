//! Stage-tensor dumps in the fixture golden format, and their comparison.
//!
//! `blip3 dump` writes the tensors the Python reference recorded
//! (`input_ids`, `pixel_values`, `vision_features`, `vision_tokens`,
//! `inputs_embeds`, `last_logits`, `generated_ids`, optional `debug.*`), so a
//! port, a quantisation or a new kernel can be checked against a golden with
//! [`compare`] and the fixture's tolerance rule.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use safetensors::{Dtype, SafeTensors, View};
use serde::Serialize;

use crate::pipeline::{RunOutput, StageTensors};
use crate::EngineError;

/// A tensor held as raw little-endian bytes, ready to be serialised.
#[derive(Debug, Clone)]
pub struct HostTensor {
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian element bytes.
    pub bytes: Vec<u8>,
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn raw_f32(t: &Tensor) -> Result<HostTensor, EngineError> {
    let values: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    Ok(HostTensor {
        dtype: Dtype::F32,
        shape: t.dims().to_vec(),
        bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    })
}

fn raw_ids(ids: &[u32]) -> HostTensor {
    HostTensor {
        dtype: Dtype::I64,
        shape: vec![ids.len()],
        bytes: ids
            .iter()
            .flat_map(|&v| i64::from(v).to_le_bytes())
            .collect(),
    }
}

/// Extra facts recorded in the dump's metadata.
#[derive(Debug, Clone, Default)]
pub struct DumpInfo {
    /// The user question.
    pub question: String,
    /// The full templated prompt.
    pub prompt: String,
    /// Image file names, in `<image>` order.
    pub image_files: Vec<String>,
}

fn no_stages() -> EngineError {
    EngineError::Request("the run kept no stage tensors (capture was off)".into())
}

/// The tensors a dump holds, named as in the fixture goldens, from `output`
/// (run with `capture = true`): what [`write_dump`] writes, for callers that
/// keep them in memory (the Python binding's `Model.dump`).
pub fn dump_tensors(output: &RunOutput) -> Result<Vec<(String, HostTensor)>, EngineError> {
    let stages: &StageTensors = output.stages.as_ref().ok_or_else(no_stages)?;
    let mut tensors: Vec<(String, HostTensor)> = vec![
        ("input_ids".into(), raw_ids(&output.input_ids)),
        ("pixel_values".into(), raw_f32(&stages.pixel_values)?),
        ("vision_features".into(), raw_f32(&stages.vision_features)?),
        ("vision_tokens".into(), raw_f32(&stages.vision_tokens)?),
        ("inputs_embeds".into(), raw_f32(&stages.inputs_embeds)?),
        ("last_logits".into(), raw_f32(&stages.last_logits)?),
        ("generated_ids".into(), raw_ids(&output.generated_ids)),
        ("debug.vit_tokens".into(), raw_f32(&stages.vit_tokens)?),
    ];
    let counts: Vec<u32> = stages
        .image_token_counts
        .iter()
        .map(|&c| u32::try_from(c).unwrap_or(u32::MAX))
        .collect();
    tensors.push(("image_token_counts".into(), raw_ids(&counts)));
    if let Some(t) = &stages.vision_attn_mask {
        tensors.push(("vision_attn_mask".into(), raw_f32(t)?));
    }
    if let Some(t) = &stages.text_embeds {
        tensors.push(("debug.text_embeds".into(), raw_f32(t)?));
    }
    Ok(tensors)
}

/// Writes `output` (run with `capture = true`) to a safetensors file.
pub fn write_dump(path: &Path, output: &RunOutput, info: &DumpInfo) -> Result<(), EngineError> {
    let stages = output.stages.as_ref().ok_or_else(no_stages)?;
    let tensors = dump_tensors(output)?;
    let json = |v: serde_json::Value| v.to_string();
    let metadata: HashMap<String, String> = [
        ("question", info.question.clone()),
        ("prompt", info.prompt.clone()),
        ("image_files", json(serde_json::json!(info.image_files))),
        ("stop_reason", output.stop_reason.label()),
        ("generated_text", output.text.clone()),
        (
            "image_sizes_wh",
            json(serde_json::json!(output
                .images
                .iter()
                .map(|i| i.image_size)
                .collect::<Vec<_>>())),
        ),
        (
            "best_resolutions_wh",
            json(serde_json::json!(output
                .images
                .iter()
                .map(|i| i.best_resolution)
                .collect::<Vec<_>>())),
        ),
        (
            "grids_npw_nph",
            json(serde_json::json!(output
                .images
                .iter()
                .map(|i| i.grid)
                .collect::<Vec<_>>())),
        ),
        (
            "num_crops",
            json(serde_json::json!(output
                .images
                .iter()
                .map(|i| i.num_crops)
                .collect::<Vec<_>>())),
        ),
        (
            "image_token_counts",
            json(serde_json::json!(stages.image_token_counts)),
        ),
        ("engine", format!("blip3-rs {}", env!("CARGO_PKG_VERSION"))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let views = tensors.iter().map(|(n, t)| (n.as_str(), t));
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| EngineError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Comparison of one tensor against its golden.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    /// Tensor name.
    pub name: String,
    /// Shapes agree.
    pub shape_ok: bool,
    /// Largest |candidate − golden|.
    pub max_abs: f64,
    /// `max_abs / max(1, max |golden|)`.
    pub max_rel: f64,
    /// Allowed `max_abs` (0 for integer tensors).
    pub limit: f64,
    /// Within tolerance (and no NaN/Inf).
    pub pass: bool,
    /// Why it failed, if it did.
    pub note: String,
}

/// Reads an F32 safetensors tensor's values (`None` for other dtypes).
pub fn read_f32(view: &safetensors::tensor::TensorView<'_>) -> Option<Vec<f32>> {
    (view.dtype() == Dtype::F32).then(|| {
        view.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    })
}

/// Reads a safetensors tensor as f64 values (any float or integer dtype).
fn values(view: &safetensors::tensor::TensorView<'_>) -> Option<Vec<f64>> {
    let b = view.data();
    Some(match view.dtype() {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        Dtype::I64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64)
            .collect(),
        Dtype::I32 => b
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        Dtype::U32 => b
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        _ => return None,
    })
}

/// Compares every non-`debug.` golden tensor (and `debug.` ones present in
/// both) with the fixture rule: integer tensors identical; float tensors within
/// `rel_tol × max(1, max |golden|)` with no NaN/Inf.
pub fn compare(candidate: &[u8], golden: &[u8], rel_tol: f64) -> Result<Vec<TensorReport>, String> {
    let cand = SafeTensors::deserialize(candidate).map_err(|e| format!("candidate: {e}"))?;
    let gold = SafeTensors::deserialize(golden).map_err(|e| format!("golden: {e}"))?;
    let mut names: Vec<String> = gold.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut reports = Vec::new();
    for name in names {
        let g = gold.tensor(&name).map_err(|e| e.to_string())?;
        let is_debug = name.starts_with("debug.");
        let mut report = TensorReport {
            name: name.clone(),
            shape_ok: false,
            max_abs: f64::NAN,
            max_rel: f64::NAN,
            limit: 0.0,
            pass: false,
            note: String::new(),
        };
        let Ok(c) = cand.tensor(&name) else {
            if !is_debug {
                report.note = "missing in candidate".into();
                reports.push(report);
            }
            continue;
        };
        report.shape_ok = c.shape() == g.shape();
        let (Some(cv), Some(gv)) = (values(&c), values(&g)) else {
            report.note = "unsupported dtype".into();
            reports.push(report);
            continue;
        };
        if !report.shape_ok {
            report.note = format!("shape {:?} vs golden {:?}", c.shape(), g.shape());
            reports.push(report);
            continue;
        }
        let integer = !matches!(
            g.dtype(),
            Dtype::F32 | Dtype::F64 | Dtype::F16 | Dtype::BF16
        );
        let peak = gv.iter().fold(0f64, |m, v| m.max(v.abs()));
        let max_abs = cv
            .iter()
            .zip(&gv)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        let finite = cv.iter().all(|v| v.is_finite());
        report.max_abs = max_abs;
        report.max_rel = max_abs / peak.max(1.0);
        report.limit = if integer {
            0.0
        } else {
            rel_tol * peak.max(1.0)
        };
        report.pass = finite && max_abs <= report.limit;
        if !finite {
            report.note = "NaN/Inf in candidate".into();
        }
        reports.push(report);
    }
    Ok(reports)
}

/// The fixture's tolerance: 0.001 × max(1, max |golden|).
pub const FIXTURE_REL_TOL: f64 = 1e-3;
