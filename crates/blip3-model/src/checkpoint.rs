//! The checkpoint's key/shape list (spec §9.1) and a random-weight writer.
//!
//! Benchmarks and full-size loading tests need a checkpoint of the real size
//! and layout, which cannot be downloaded here; [`write_random_checkpoint`]
//! produces one: seeded, deterministic per tensor, streamed to disk in
//! Hugging Face-style shards (5 GB, `model.safetensors.index.json`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::family::Family;
use crate::weights::WeightStore;
use crate::{ModelError, Result};

/// How a tensor is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal(0, std).
    Normal(f32),
    /// 1 + Normal(0, std): norm weights.
    OnePlusNormal(f32),
}

/// One tensor of the checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Checkpoint key.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Initialisation for random checkpoints.
    pub init: Init,
}

impl TensorSpec {
    /// A tensor `name` of `shape` drawn from `init`.
    pub fn new(name: impl Into<String>, shape: &[usize], init: Init) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
            init,
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Standard deviation of random weights (and of the noise on norm weights).
pub(crate) const W_STD: f32 = 0.02;

/// Random weights: Normal(0, 0.02).
pub(crate) const WEIGHT: Init = Init::Normal(W_STD);
/// Random norm weights: 1 + Normal(0, 0.02).
pub(crate) const NORM: Init = Init::OnePlusNormal(W_STD);

/// Checks an opened checkpoint against a family's key table before any
/// tensor is read: every key must be present (dense or pre-quantised), except
/// r-v1's `lm_head.bias`, which older exports lack (zeros, logged). Keys the
/// table does not know are logged and left unread (v1.5's SigLIP pooling head
/// among them); shapes are checked as each tensor loads.
pub fn check_keys(store: &WeightStore, family: Family, specs: &[TensorSpec]) -> Result<()> {
    let optional = |name: &str| family == Family::Blip3R1 && name == "vlm.lang_model.lm_head.bias";
    let missing: Vec<&str> = specs
        .iter()
        .map(|s| s.name.as_str())
        .filter(|name| !store.contains_weight(name) && !optional(name))
        .collect();
    if let Some(first) = missing.first() {
        let searched = format!(
            "{}; {} of the {} tensors of a {family} checkpoint are absent",
            store.searched(),
            missing.len(),
            specs.len()
        );
        return Err(ModelError::MissingTensor {
            name: (*first).to_string(),
            searched,
        });
    }
    let known: std::collections::HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let mut unused = 0usize;
    for name in store.names() {
        let base = name
            .rsplit_once('.')
            .filter(|(_, suffix)| ["q8_0", "q4_0", "q4_k", "scales"].contains(suffix))
            .map_or(name, |(base, _)| base);
        if known.contains(base) {
            continue;
        }
        if family.unused_prefixes().iter().any(|p| name.starts_with(p)) {
            tracing::debug!("{name}: not used by the {family} forward pass, ignored");
        } else {
            tracing::warn!("{name}: not a {family} tensor, ignored");
        }
        unused += 1;
    }
    if unused > 0 {
        tracing::info!("{unused} checkpoint tensors are not used and were not loaded");
    }
    Ok(())
}

/// Element type written to a random checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreDtype {
    /// 4 bytes per element (what the real checkpoint uses).
    F32,
    /// 2 bytes per element.
    Bf16,
}

impl StoreDtype {
    fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Bf16 => 2,
        }
    }
    fn tag(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::Bf16 => "BF16",
        }
    }
}

/// Hugging Face's default `max_shard_size` ("5GB").
pub const HF_SHARD_BYTES: usize = 5_000_000_000;

/// SplitMix64: tiny, seedable, and stable across releases (unlike `rand`'s
/// `StdRng`), so a seed names the same checkpoint forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Two standard normals (Box–Muller).
    fn normal_pair(&mut self) -> (f32, f32) {
        let r = (-2.0 * self.uniform().ln()).sqrt();
        let t = std::f64::consts::TAU * self.uniform();
        ((r * t.cos()) as f32, (r * t.sin()) as f32)
    }
}

fn name_seed(seed: u64, name: &str) -> u64 {
    // FNV-1a over the key, mixed with the seed: each tensor has its own stream.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Fills `out` with the random values of elements `offset..offset+out.len()`
/// of a tensor. Values depend only on (seed, name, element index).
fn fill_random(spec: &TensorSpec, seed: u64, offset: usize, out: &mut [f32]) {
    // Streams are reseeded every 2^16 elements so chunks can be made in parallel.
    const BLOCK: usize = 1 << 16;
    let base = name_seed(seed, &spec.name);
    let mut i = 0;
    while i < out.len() {
        let idx = offset + i;
        let block = idx / BLOCK;
        let mut rng = SplitMix64(base ^ (block as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
        // Skip to idx within the block (pairs of normals).
        let within = idx % BLOCK;
        for _ in 0..within / 2 {
            rng.normal_pair();
        }
        let mut k = within;
        let mut pending = if within % 2 == 1 {
            Some(rng.normal_pair().1)
        } else {
            None
        };
        while k < BLOCK && i < out.len() {
            let z = match pending.take() {
                Some(z) => z,
                None => {
                    let (a, b) = rng.normal_pair();
                    pending = Some(b);
                    a
                }
            };
            out[i] = match spec.init {
                Init::Normal(std) => z * std,
                Init::OnePlusNormal(std) => 1.0 + z * std,
            };
            i += 1;
            k += 1;
        }
    }
}

fn write_tensor(
    spec: &TensorSpec,
    seed: u64,
    dtype: StoreDtype,
    w: &mut impl Write,
) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let total = spec.numel();
    let mut values = vec![0f32; CHUNK.min(total)];
    let mut bytes = Vec::with_capacity(values.len() * 4);
    let mut done = 0;
    while done < total {
        let n = CHUNK.min(total - done);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let per = n.div_ceil(threads);
        std::thread::scope(|s| {
            for (t, part) in values[..n].chunks_mut(per).enumerate() {
                s.spawn(move || fill_random(spec, seed, done + t * per, part));
            }
        });
        bytes.clear();
        for &v in &values[..n] {
            match dtype {
                StoreDtype::F32 => bytes.extend_from_slice(&v.to_le_bytes()),
                StoreDtype::Bf16 => bytes.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
            }
        }
        w.write_all(&bytes)?;
        done += n;
    }
    Ok(())
}

/// Writes one safetensors file holding `specs`, streaming the data.
fn write_shard(path: &Path, specs: &[&TensorSpec], seed: u64, dtype: StoreDtype) -> Result<()> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0usize;
    for spec in specs {
        let len = spec.numel() * dtype.bytes();
        header.insert(
            spec.name.clone(),
            serde_json::json!({"dtype": dtype.tag(), "shape": spec.shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut json = serde_json::to_vec(&header).map_err(|e| ModelError::Input(e.to_string()))?;
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut w = BufWriter::with_capacity(1 << 22, File::create(path).map_err(io)?);
    w.write_all(&(json.len() as u64).to_le_bytes())
        .map_err(io)?;
    w.write_all(&json).map_err(io)?;
    for spec in specs {
        write_tensor(spec, seed, dtype, &mut w).map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok(())
}

/// Writes random weights for `specs` into `dir`: `model.safetensors` when they
/// fit in one shard, else `model-0000k-of-0000n.safetensors` plus
/// `model.safetensors.index.json`. `progress` is called after each shard.
pub fn write_random_checkpoint(
    dir: &Path,
    specs: &[TensorSpec],
    seed: u64,
    dtype: StoreDtype,
    shard_bytes: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<()> {
    let mut shards: Vec<Vec<&TensorSpec>> = vec![Vec::new()];
    let mut current = 0usize;
    for spec in specs {
        let len = spec.numel() * dtype.bytes();
        if current > 0 && current + len > shard_bytes {
            shards.push(Vec::new());
            current = 0;
        }
        current += len;
        shards.last_mut().expect("at least one shard").push(spec);
    }
    let n = shards.len();
    if n == 1 {
        write_shard(&dir.join("model.safetensors"), &shards[0], seed, dtype)?;
        progress(1, 1);
        return Ok(());
    }
    let mut weight_map = BTreeMap::new();
    let mut total = 0usize;
    for (k, shard) in shards.iter().enumerate() {
        let name = format!("model-{:05}-of-{:05}.safetensors", k + 1, n);
        for spec in shard {
            weight_map.insert(spec.name.clone(), name.clone());
            total += spec.numel() * dtype.bytes();
        }
        write_shard(&dir.join(&name), shard, seed, dtype)?;
        progress(k + 1, n);
    }
    let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    let path = dir.join("model.safetensors.index.json");
    let text =
        serde_json::to_string_pretty(&index).map_err(|e| ModelError::Input(e.to_string()))?;
    std::fs::write(&path, text).map_err(|source| ModelError::Io { path, source })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;

    #[test]
    fn real_instruct_layout_has_666_tensors_and_4_589_362_243_parameters() {
        use crate::family::Variant;
        let cfg = ModelConfig::instruct_r_v1();
        let family = cfg.family().unwrap();
        assert_eq!(family, Family::Blip3R1);
        let instruct = Variant {
            text_projection: true,
        };
        let specs = family.tensor_specs(&cfg, instruct);
        assert_eq!(specs.len(), 666);
        let params: usize = specs.iter().map(TensorSpec::numel).sum();
        assert_eq!(params, 4_589_362_243);
        let base = family.tensor_specs(
            &cfg,
            Variant {
                text_projection: false,
            },
        );
        assert_eq!(base.len(), 662);
        assert_eq!(
            base.iter().map(TensorSpec::numel).sum::<usize>(),
            4_583_789_123
        );
    }

    #[test]
    fn real_v15_layout_has_718_tensors_and_4_359_257_219_parameters() {
        use crate::family::Variant;
        let cfg = ModelConfig::xgenmm_v15();
        let family = cfg.family().unwrap();
        assert_eq!(family, Family::XgenmmV15);
        let specs = family.tensor_specs(
            &cfg,
            Variant {
                text_projection: false,
            },
        );
        assert_eq!(specs.len(), 718);
        let params: usize = specs.iter().map(TensorSpec::numel).sum();
        assert_eq!(params, 4_359_257_219);
        let head: usize = specs
            .iter()
            .filter(|s| s.name.starts_with("vlm.vision_encoder.head."))
            .map(TensorSpec::numel)
            .sum();
        assert_eq!(head, 15_238_352);
    }

    #[test]
    fn random_values_do_not_depend_on_chunking() {
        let spec = TensorSpec::new("x", &[200_001], Init::Normal(1.0));
        let mut whole = vec![0f32; 200_001];
        fill_random(&spec, 7, 0, &mut whole);
        let mut parts = vec![0f32; 200_001];
        let (a, b) = parts.split_at_mut(70_001);
        fill_random(&spec, 7, 0, a);
        fill_random(&spec, 7, 70_001, b);
        assert_eq!(whole, parts);
        let mean: f32 = whole.iter().sum::<f32>() / whole.len() as f32;
        let var: f32 =
            whole.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / whole.len() as f32;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "mean {mean} var {var}"
        );
    }
}
