//! Memory-mapped safetensors checkpoints, single-file or sharded.
//!
//! Tensors are looked up by the checkpoint's own key names and checked against
//! the shape the configuration implies, so a wrong or truncated checkpoint fails
//! with the key and file named instead of a shape error deep in a forward pass.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use blip3_kernels::quantized::{self, QuantizedMatrix};

use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::{ModelError, Result};

/// How matrix weights are held in memory after loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightDtype {
    /// Keep the checkpoint's dtype (F32 stays F32, BF16/F16 stay half precision;
    /// half-precision weights are widened to F32 inside each matrix product).
    #[default]
    AsStored,
    /// Convert every weight to F32 (the reference's precision).
    F32,
    /// Convert matrix weights to BF16 (half the memory; activations stay F32).
    Bf16,
}

/// Load-time quantisation of linear-layer weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantization {
    /// GGML Q8_0: blocks of 32 int8 values with an F16 scale.
    Q8_0,
    /// GGML Q4_0: blocks of 32 4-bit codes with an F16 scale.
    Q4_0,
    /// GGML Q4_K: super-blocks of 256 with 6-bit sub-block scales and minimums
    /// (rows not a multiple of 256 fall back to Q4_0).
    Q4K,
}

impl Quantization {
    /// The format's name (`q8_0`, `q4_0`), also its tensor-name suffix in a
    /// pre-quantised checkpoint.
    pub fn name(self) -> &'static str {
        match self {
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4K => "q4_k",
        }
    }

    /// Parses a format name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "q8_0" => Some(Self::Q8_0),
            "q4_0" => Some(Self::Q4_0),
            "q4_k" => Some(Self::Q4K),
            _ => None,
        }
    }
}

/// Safetensors header metadata key naming the format of a pre-quantised
/// checkpoint written by `blip3 quantize`.
pub const QUANTIZATION_METADATA_KEY: &str = "blip3.quantization";

/// Suffix of the F16 block-scale tensor next to a pre-quantised weight's codes.
pub const SCALES_SUFFIX: &str = "scales";

struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
}

/// The tensors of a model folder, memory-mapped.
pub struct WeightStore {
    shards: Vec<Shard>,
    entries: HashMap<String, Entry>,
    device: Device,
    policy: WeightDtype,
    quantization: Option<Quantization>,
    /// Format the checkpoint was pre-quantised to (from its header metadata).
    stored_quantization: Option<Quantization>,
    /// Matrices quantised while loading, by weight name (for `blip3 quantize`).
    quantized_log: Mutex<Vec<(String, Arc<dyn QuantizedMatrix>)>>,
}

/// A BF16 tensor of `shape` from a checkpoint's raw little-endian `bytes`
/// (BF16, F16 or F32, rounded to nearest even as `Tensor::to_dtype` does),
/// whose data starts on a 64-byte boundary: a view into a buffer 32 elements
/// longer. The AMX GEMM loads each weight tile row (64 bytes) straight from
/// the matrix, and a row that straddles two cache lines loads about 4x
/// slower. One pass over the bytes: no intermediate copy.
fn aligned_bf16_tensor(
    stored: Dtype,
    bytes: &[u8],
    shape: &[usize],
    device: &Device,
) -> Result<Tensor> {
    use half::{bf16, f16};
    let len: usize = shape.iter().product();
    let mut buffer: Vec<bf16> = Vec::with_capacity(len + 32);
    // Streamed on every decode step: huge pages spare the TLB misses.
    blip3_kernels::allocator::advise_huge_pages(&mut buffer);
    // 32 BF16 of slack reach the next 64-byte boundary wherever the buffer starts.
    let skip = buffer.as_ptr().align_offset(64).min(32);
    buffer.resize(skip, bf16::ZERO);
    match stored {
        Dtype::BF16 => buffer.extend(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]]))),
        ),
        Dtype::F16 => buffer.extend(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_f32(f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())),
        ),
        _ => buffer.extend(
            bytes
                .chunks_exact(4)
                .map(|c| bf16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        ),
    }
    buffer.resize(len + 32, bf16::ZERO);
    Ok(Tensor::from_vec(buffer, len + 32, device)?
        .narrow(0, skip, len)?
        .reshape(shape)?)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl WeightStore {
    /// Opens `model.safetensors`, or the shards listed in `model.safetensors.index.json`.
    pub fn open(dir: &Path, device: &Device, policy: WeightDtype) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(io_err(&index))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| ModelError::BadConfig {
                    path: index.clone(),
                    reason: e.to_string(),
                })?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ModelError::BadConfig {
                    path: index.clone(),
                    reason: "no \"weight_map\" object".into(),
                })?;
            let mut names: Vec<String> = map
                .values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|n| dir.join(n)).collect()
        } else if single.exists() {
            vec![single]
        } else {
            return Err(ModelError::NoWeights(dir.to_path_buf()));
        };
        let mut store = Self {
            shards: Vec::new(),
            entries: HashMap::new(),
            device: device.clone(),
            policy,
            quantization: None,
            stored_quantization: None,
            quantized_log: Mutex::new(Vec::new()),
        };
        for path in files {
            store.add_file(&path)?;
        }
        Ok(store)
    }

    fn add_file(&mut self, path: &Path) -> Result<()> {
        let file = File::open(path).map_err(io_err(path))?;
        // SAFETY: the file is opened read-only and treated as immutable for the
        // lifetime of the map; a checkpoint rewritten underneath a running
        // process is outside what any loader can defend against.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
        let bad = |reason: String| ModelError::BadWeights {
            path: path.to_path_buf(),
            reason,
        };
        let (header_len, metadata) =
            SafeTensors::read_metadata(&mmap).map_err(|e| bad(e.to_string()))?;
        let data_start = 8 + header_len;
        if let Some(format) = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(QUANTIZATION_METADATA_KEY))
        {
            let q = Quantization::from_name(format)
                .ok_or_else(|| bad(format!("unknown pre-quantised format {format:?}")))?;
            self.stored_quantization = Some(q);
            self.quantization = Some(q);
        }
        let index = self.shards.len();
        for (name, info) in metadata.tensors() {
            let (start, end) = info.data_offsets;
            if data_start + end > mmap.len() || start > end {
                return Err(bad(format!("tensor {name} lies outside the file")));
            }
            self.entries.insert(
                name,
                Entry {
                    file: index,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start,
                    end,
                },
            );
        }
        self.shards.push(Shard {
            path: path.to_path_buf(),
            mmap,
            data_start,
        });
        Ok(())
    }

    /// Asks linear layers to quantise their weights at load time. A
    /// pre-quantised checkpoint already implies its own format: `None` keeps
    /// it, another format is an error.
    pub fn set_quantization(&mut self, quantization: Option<Quantization>) -> Result<()> {
        match (self.stored_quantization, quantization) {
            (Some(stored), Some(asked)) if stored != asked => Err(ModelError::Input(format!(
                "the checkpoint is pre-quantised to {}; it cannot be loaded as {}",
                stored.name(),
                asked.name()
            ))),
            (Some(_), None) => Ok(()),
            (_, asked) => {
                self.quantization = asked;
                Ok(())
            }
        }
    }

    /// Format the checkpoint was pre-quantised to, if any.
    pub fn stored_quantization(&self) -> Option<Quantization> {
        self.stored_quantization
    }

    /// A pre-quantised weight `name` [rows, cols]: the codes tensor
    /// `{name}.{format}` and the F16 scales `{name}.scales`. `None` when the
    /// checkpoint holds `name` unquantised.
    pub fn prequantized(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<Option<Arc<dyn QuantizedMatrix>>> {
        if self.stored_quantization.is_none() {
            return Ok(None);
        }
        // A weight may be stored in a fallback format (Q4_K rows that are not
        // whole super-blocks are Q4_0), so look for every known suffix.
        let Some(format) = [Quantization::Q8_0, Quantization::Q4_0, Quantization::Q4K]
            .into_iter()
            .find(|f| self.contains(&format!("{name}.{}", f.name())))
        else {
            return Ok(None);
        };
        let codes_name = format!("{name}.{}", format.name());
        let &[rows, cols] = shape else {
            return Err(ModelError::Input(format!(
                "{name}: a quantised weight must be 2-D"
            )));
        };
        let bad_shape = || {
            ModelError::Input(format!(
                "{name}: {cols} columns cannot be {}",
                format.name()
            ))
        };
        let width = quantized::code_width(format.name(), cols).ok_or_else(bad_shape)?;
        let per_row = quantized::scales_per_row(format.name(), cols).ok_or_else(bad_shape)?;
        let (_, codes) = self.bytes(&codes_name, &[rows, width], &[Dtype::U8, Dtype::I8])?;
        let scales_name = format!("{name}.{SCALES_SUFFIX}");
        let (_, scales) = self.bytes(&scales_name, &[rows, per_row], &[Dtype::F16])?;
        let scales: Vec<half::f16> = scales
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]))
            .collect();
        let codes = codes.to_vec();
        self.release(&codes_name);
        self.release(&scales_name);
        let matrix =
            quantized::from_parts(format.name(), rows, cols, codes, scales).ok_or_else(|| {
                ModelError::BadWeights {
                    path: self.shards[0].path.clone(),
                    reason: format!("{name}: codes and scales do not form a {rows}x{cols} matrix"),
                }
            })?;
        Ok(Some(matrix))
    }

    /// Notes a matrix quantised at load time under its weight name.
    pub fn record_quantized(&self, name: &str, matrix: Arc<dyn QuantizedMatrix>) {
        if let Ok(mut log) = self.quantized_log.lock() {
            log.push((name.to_string(), matrix));
        }
    }

    /// The matrices quantised while loading, by weight name.
    pub fn quantized_matrices(&self) -> HashMap<String, Arc<dyn QuantizedMatrix>> {
        self.quantized_log
            .lock()
            .map(|log| log.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The stored bytes of tensor `name` with its dtype and shape, as in the file.
    pub fn raw_bytes(&self, name: &str) -> Result<(Dtype, Vec<usize>, &[u8])> {
        let entry = self.entry(name)?;
        let shard = &self.shards[entry.file];
        let bytes = &shard.mmap[shard.data_start + entry.start..shard.data_start + entry.end];
        Ok((entry.dtype, entry.shape.clone(), bytes))
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                searched: self.searched(),
            })
    }

    /// Bytes of tensor `name`, checked against `shape` and the allowed dtypes.
    fn bytes(&self, name: &str, shape: &[usize], dtypes: &[Dtype]) -> Result<(Dtype, &[u8])> {
        let entry = self.entry(name)?;
        let shard = &self.shards[entry.file];
        let file = shard.path.display().to_string();
        if entry.shape != shape {
            return Err(ModelError::ShapeMismatch {
                name: name.to_string(),
                file,
                found: entry.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        if !dtypes.contains(&entry.dtype) {
            return Err(ModelError::UnsupportedDtype {
                name: name.to_string(),
                file,
                dtype: format!("{:?}", entry.dtype),
            });
        }
        let bytes = &shard.mmap[shard.data_start + entry.start..shard.data_start + entry.end];
        let elem = match entry.dtype {
            Dtype::U8 | Dtype::I8 => 1,
            Dtype::F16 | Dtype::BF16 => 2,
            _ => 4,
        };
        if bytes.len() != shape.iter().product::<usize>() * elem {
            return Err(ModelError::BadWeights {
                path: shard.path.clone(),
                reason: format!(
                    "tensor {name} has {} bytes for shape {shape:?}",
                    bytes.len()
                ),
            });
        }
        Ok((entry.dtype, bytes))
    }

    /// The requested load-time quantisation.
    pub fn quantization(&self) -> Option<Quantization> {
        self.quantization
    }

    /// Device tensors are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the checkpoint has a tensor of this name.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Whether the checkpoint has weight `name`, dense or pre-quantised.
    pub fn contains_weight(&self, name: &str) -> bool {
        self.contains(name)
            || (self.stored_quantization.is_some()
                && ["q8_0", "q4_0", "q4_k"]
                    .iter()
                    .any(|f| self.contains(&format!("{name}.{f}"))))
    }

    /// All tensor names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub(crate) fn searched(&self) -> String {
        self.shards
            .iter()
            .map(|s| {
                s.path.file_name().map_or_else(
                    || s.path.display().to_string(),
                    |n| n.to_string_lossy().into(),
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn raw(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (stored, bytes) = self.bytes(name, shape, &[Dtype::F32, Dtype::BF16, Dtype::F16])?;
        let dtype = match stored {
            Dtype::F32 => DType::F32,
            Dtype::BF16 => DType::BF16,
            _ => DType::F16,
        };
        let tensor = Tensor::from_raw_buffer(bytes, dtype, shape, &self.device)?;
        self.release(name);
        Ok(tensor)
    }

    /// Drops the mapped pages of tensor `name` from this process once it has
    /// been copied, so peak memory is the weights once, not the copy plus the
    /// mapped file.
    fn release(&self, name: &str) {
        #[cfg(unix)]
        if let Some(entry) = self.entries.get(name) {
            let shard = &self.shards[entry.file];
            // SAFETY: the map is a read-only file mapping and no slice into this
            // range outlives the caller's copy; MADV_DONTNEED only makes the
            // kernel re-read those pages from the file if they are touched again.
            let _ = unsafe {
                shard.mmap.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    shard.data_start + entry.start,
                    entry.end - entry.start,
                )
            };
        }
        #[cfg(not(unix))]
        let _ = name;
    }

    /// A small tensor (norm, bias, embedding row set) as F32.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        Ok(self.raw(name, shape)?.to_dtype(DType::F32)?)
    }

    /// A matrix weight in the dtype chosen by the [`WeightDtype`] policy.
    /// BF16 matrices on the CPU start on a 64-byte boundary (see
    /// [`aligned_bf16_tensor`]).
    pub fn matrix(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (stored, bytes) = self.bytes(name, shape, &[Dtype::F32, Dtype::BF16, Dtype::F16])?;
        let to_bf16 = match self.policy {
            WeightDtype::Bf16 => true,
            WeightDtype::AsStored => stored == Dtype::BF16,
            WeightDtype::F32 => false,
        };
        if to_bf16 && self.device.is_cpu() {
            let t = aligned_bf16_tensor(stored, bytes, shape, &self.device)?;
            self.release(name);
            return Ok(t);
        }
        let t = self.raw(name, shape)?;
        Ok(match (self.policy, t.dtype()) {
            (WeightDtype::F32, d) if d != DType::F32 => t.to_dtype(DType::F32)?,
            (WeightDtype::Bf16, d) if d != DType::BF16 => t.to_dtype(DType::BF16)?,
            _ => t,
        })
    }

    /// Like [`WeightStore::f32`], but `None` when the tensor is absent.
    pub fn optional_f32(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if self.contains(name) {
            self.f32(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_matrices_start_on_64_bytes_with_the_values_of_to_dtype() {
        let values: Vec<f32> = (0..3 * 70).map(|i| (i as f32 - 100.0) / 7.0).collect();
        let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f32_tensor = Tensor::from_vec(values.clone(), (3, 70), &Device::Cpu).unwrap();
        let want = f32_tensor.to_dtype(DType::BF16).unwrap();
        let bf16_bytes: Vec<u8> = want
            .flatten_all()
            .unwrap()
            .to_vec1::<half::bf16>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_bits().to_le_bytes())
            .collect();
        for (stored, bytes) in [(Dtype::F32, &f32_bytes), (Dtype::BF16, &bf16_bytes)] {
            let t = aligned_bf16_tensor(stored, bytes, &[3, 70], &Device::Cpu).unwrap();
            {
                let (storage, layout) = t.storage_and_layout();
                let candle_core::Storage::Cpu(cpu) = &*storage else {
                    panic!("CPU tensor")
                };
                let data = &cpu.as_slice::<half::bf16>().unwrap()[layout.start_offset()..];
                assert!((data.as_ptr() as usize).is_multiple_of(64));
            }
            assert_eq!(t.dims(), &[3, 70]);
            assert_eq!(
                t.to_vec2::<half::bf16>().unwrap(),
                want.to_vec2::<half::bf16>().unwrap(),
                "{stored:?}"
            );
        }
    }
}
