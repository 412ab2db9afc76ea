//! Writes a pre-quantised model folder (`blip3 quantize`): the source folder's
//! configuration and tokenizer files, and one `model.safetensors` in which
//! every weight the loader would quantise is stored as its blocks — the codes
//! as `{name}.q8_0` (I8 [N, K]), `{name}.q4_0` (U8 [N, K/2]) or `{name}.q4_k`
//! (U8 [N, K/256·140]: per super-block 12 sub-scale bytes then 128 code
//! bytes) and the F16 scales as `{name}.scales` ([N, K/32]; Q4_K: `d`, `dmin`
//! per super-block, [N, K/128]) — and every other tensor as it was.
//! The header metadata names the format, so loading the folder needs no
//! `--quantize` and does no quantisation work for those weights.
//!
//! The output of a pre-quantised folder is identical to loading the source
//! folder with `--quantize` of the same format: the blocks are the ones that
//! load would have computed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use blip3_kernels::quantized::{code_width, scales_per_row};
use candle_core::Device;
use safetensors::Dtype;

use crate::weights::{Quantization, WeightDtype, QUANTIZATION_METADATA_KEY, SCALES_SUFFIX};
use crate::{ModelConfig, ModelError, Result, VisionLanguageModel, WeightStore};

/// What [`write_quantized_folder`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantizedFolder {
    /// Weights stored as blocks.
    pub quantized_tensors: usize,
    /// Tensors copied unchanged.
    pub copied_tensors: usize,
    /// Size of the written `model.safetensors`.
    pub weight_bytes: u64,
}

/// One tensor of the output file: a name, its dtype tag, shape and payload.
enum Payload<'a> {
    Copy(&'a [u8]),
    Codes(std::sync::Arc<dyn blip3_kernels::quantized::QuantizedMatrix>),
    Scales(std::sync::Arc<dyn blip3_kernels::quantized::QuantizedMatrix>),
}

struct OutTensor<'a> {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    len: usize,
    payload: Payload<'a>,
}

fn dtype_tag(dtype: Dtype) -> Result<&'static str> {
    Ok(match dtype {
        Dtype::F32 => "F32",
        Dtype::BF16 => "BF16",
        Dtype::F16 => "F16",
        Dtype::I8 => "I8",
        Dtype::U8 => "U8",
        Dtype::I64 => "I64",
        Dtype::I32 => "I32",
        other => return Err(ModelError::Input(format!("cannot copy a {other:?} tensor"))),
    })
}

/// Quantises the model folder `src` to `format` and writes the result to
/// `out` (created; it must not exist or be empty).
pub fn write_quantized_folder(
    src: &Path,
    out: &Path,
    format: Quantization,
) -> Result<QuantizedFolder> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    if out.exists() && std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(ModelError::Input(format!(
            "output folder {} exists and is not empty",
            out.display()
        )));
    }
    let config = ModelConfig::from_file(&src.join("config.json"))?;
    let mut store = WeightStore::open(src, &Device::Cpu, WeightDtype::AsStored)?;
    if let Some(stored) = store.stored_quantization() {
        return Err(ModelError::Input(format!(
            "{} is already pre-quantised ({})",
            src.display(),
            stored.name()
        )));
    }
    store.set_quantization(Some(format))?;
    // Loading runs exactly the quantisation a `--quantize` load would.
    let model = VisionLanguageModel::from_store(config, &store)?;
    let quantized = store.quantized_matrices();

    let mut names: Vec<&str> = store.names().collect();
    names.sort_unstable();
    let mut tensors = Vec::with_capacity(names.len() + quantized.len());
    for name in names {
        if let Some(q) = quantized.get(name) {
            // The matrix's own format: Q4_K falls back to Q4_0 on some rows.
            let (rows, format) = (q.rows(), q.format());
            let width = |per_row: Option<usize>| {
                per_row.ok_or_else(|| ModelError::Input(format!("unknown format {format}")))
            };
            let codes = rows * width(code_width(format, q.cols()))?;
            let scales = rows * width(scales_per_row(format, q.cols()))?;
            tensors.push(OutTensor {
                name: format!("{name}.{}", q.format()),
                dtype: if q.format() == "q8_0" { "I8" } else { "U8" },
                shape: vec![rows, codes / rows.max(1)],
                len: codes,
                payload: Payload::Codes(q.clone()),
            });
            tensors.push(OutTensor {
                name: format!("{name}.{SCALES_SUFFIX}"),
                dtype: "F16",
                shape: vec![rows, scales / rows.max(1)],
                len: 2 * scales,
                payload: Payload::Scales(q.clone()),
            });
        } else {
            let (dtype, shape, bytes) = store.raw_bytes(name)?;
            tensors.push(OutTensor {
                name: name.to_string(),
                dtype: dtype_tag(dtype)?,
                shape,
                len: bytes.len(),
                payload: Payload::Copy(bytes),
            });
        }
    }

    std::fs::create_dir_all(out).map_err(io(out))?;
    for entry in std::fs::read_dir(src).map_err(io(src))? {
        let entry = entry.map_err(io(src))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let weights = name.ends_with(".safetensors") || name == "model.safetensors.index.json";
        if path.is_file() && !weights {
            std::fs::copy(&path, out.join(&name)).map_err(io(&path))?;
        }
    }

    let path = out.join("model.safetensors");
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({"format": "pt", QUANTIZATION_METADATA_KEY: format.name()}),
    );
    let mut offset = 0usize;
    for t in &tensors {
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, offset + t.len]}),
        );
        offset += t.len;
    }
    let mut json = serde_json::to_vec(&header).map_err(|e| ModelError::Input(e.to_string()))?;
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let file = File::create(&path).map_err(io(&path))?;
    let mut w = BufWriter::with_capacity(1 << 22, file);
    w.write_all(&(json.len() as u64).to_le_bytes())
        .map_err(io(&path))?;
    w.write_all(&json).map_err(io(&path))?;
    for t in &tensors {
        match &t.payload {
            Payload::Copy(bytes) => w.write_all(bytes),
            Payload::Codes(q) => w.write_all(&q.code_bytes()),
            Payload::Scales(q) => {
                let bytes: Vec<u8> = q.scales().iter().flat_map(|s| s.to_le_bytes()).collect();
                w.write_all(&bytes)
            }
        }
        .map_err(io(&path))?;
    }
    w.flush().map_err(io(&path))?;
    drop(model);
    Ok(QuantizedFolder {
        quantized_tensors: quantized.len(),
        copied_tensors: tensors.len() - 2 * quantized.len(),
        weight_bytes: (8 + json.len() + offset) as u64,
    })
}
