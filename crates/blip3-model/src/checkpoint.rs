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

use crate::config::Blip3Config;
use crate::decoupled::NUM_ADDITIONAL;
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
    fn new(name: impl Into<String>, shape: &[usize], init: Init) -> Self {
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

const W_STD: f32 = 0.02;

/// Every tensor of a BLIP-3 r-v1 checkpoint for `config`, in a stable order
/// (666 for the real instruct model; `text_projection` only if `instruct`).
pub fn tensor_specs(config: &Blip3Config, instruct: bool) -> Vec<TensorSpec> {
    let mut out = Vec::new();
    let w = Init::Normal(W_STD);
    let norm = Init::OnePlusNormal(W_STD);

    let v = config.vision();
    let (vw, g, p) = (v.width, v.grid(), v.patch_size);
    let ve = "vlm.vision_encoder";
    out.push(TensorSpec::new(format!("{ve}.class_embedding"), &[vw], w));
    out.push(TensorSpec::new(
        format!("{ve}.positional_embedding"),
        &[g * g + 1, vw],
        w,
    ));
    out.push(TensorSpec::new(format!("{ve}.proj"), &[vw, 1024], w));
    out.push(TensorSpec::new(
        format!("{ve}.conv1.weight"),
        &[vw, 3, p, p],
        w,
    ));
    out.push(TensorSpec::new(format!("{ve}.ln_pre.weight"), &[vw], norm));
    out.push(TensorSpec::new(format!("{ve}.ln_pre.bias"), &[vw], w));
    for i in 0..v.layers {
        let b = format!("{ve}.transformer.resblocks.{i}");
        let mlp = v.mlp_width();
        out.push(TensorSpec::new(format!("{b}.ln_1.weight"), &[vw], norm));
        out.push(TensorSpec::new(format!("{b}.ln_1.bias"), &[vw], w));
        out.push(TensorSpec::new(
            format!("{b}.attn.in_proj_weight"),
            &[3 * vw, vw],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{b}.attn.in_proj_bias"),
            &[3 * vw],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{b}.attn.out_proj.weight"),
            &[vw, vw],
            w,
        ));
        out.push(TensorSpec::new(format!("{b}.attn.out_proj.bias"), &[vw], w));
        out.push(TensorSpec::new(format!("{b}.ln_2.weight"), &[vw], norm));
        out.push(TensorSpec::new(format!("{b}.ln_2.bias"), &[vw], w));
        out.push(TensorSpec::new(
            format!("{b}.mlp.c_fc.weight"),
            &[mlp, vw],
            w,
        ));
        out.push(TensorSpec::new(format!("{b}.mlp.c_fc.bias"), &[mlp], w));
        out.push(TensorSpec::new(
            format!("{b}.mlp.c_proj.weight"),
            &[vw, mlp],
            w,
        ));
        out.push(TensorSpec::new(format!("{b}.mlp.c_proj.bias"), &[vw], w));
    }
    out.push(TensorSpec::new(format!("{ve}.ln_post.weight"), &[vw], norm));
    out.push(TensorSpec::new(format!("{ve}.ln_post.bias"), &[vw], w));

    let r = &config.vision_tokenizer_config;
    let vt = "vlm.vision_tokenizer";
    let (c, d, inner) = (
        r.vis_feature_dim,
        r.lang_embedding_dim,
        r.heads * r.dim_head,
    );
    out.push(TensorSpec::new(
        format!("{vt}.latents"),
        &[r.num_vis_tokens, c],
        Init::Normal(1.0),
    ));
    out.push(TensorSpec::new(
        format!("{vt}.projection.weight"),
        &[d, c],
        w,
    ));
    out.push(TensorSpec::new(format!("{vt}.projection.bias"), &[d], w));
    if instruct {
        out.push(TensorSpec::new(
            format!("{vt}.text_projection.0.weight"),
            &[c, d],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{vt}.text_projection.0.bias"),
            &[c],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{vt}.text_projection.2.weight"),
            &[c, c],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{vt}.text_projection.2.bias"),
            &[c],
            w,
        ));
    }
    for l in 0..r.depth {
        let a = format!("{vt}.layers.{l}.0");
        let f = format!("{vt}.layers.{l}.1");
        out.push(TensorSpec::new(
            format!("{a}.norm_media.weight"),
            &[c],
            norm,
        ));
        out.push(TensorSpec::new(format!("{a}.norm_media.bias"), &[c], w));
        out.push(TensorSpec::new(
            format!("{a}.norm_latents.weight"),
            &[c],
            norm,
        ));
        out.push(TensorSpec::new(format!("{a}.norm_latents.bias"), &[c], w));
        out.push(TensorSpec::new(format!("{a}.to_q.weight"), &[inner, c], w));
        out.push(TensorSpec::new(
            format!("{a}.to_kv.weight"),
            &[2 * inner, c],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{a}.to_out.weight"),
            &[c, inner],
            w,
        ));
        out.push(TensorSpec::new(format!("{f}.0.weight"), &[c], norm));
        out.push(TensorSpec::new(format!("{f}.0.bias"), &[c], w));
        out.push(TensorSpec::new(
            format!("{f}.1.weight"),
            &[c * r.ff_mult, c],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{f}.3.weight"),
            &[c, c * r.ff_mult],
            w,
        ));
    }
    out.push(TensorSpec::new(format!("{vt}.norm.weight"), &[c], norm));
    out.push(TensorSpec::new(format!("{vt}.norm.bias"), &[c], w));

    let t = &config.text_config;
    let lm = "vlm.lang_model";
    let (h, vocab) = (t.hidden_size, t.vocab_size);
    let qkv = (t.num_attention_heads + 2 * t.kv_heads()) * t.head_dim();
    out.push(TensorSpec::new(
        format!("{lm}.model.embed_tokens.weight"),
        &[vocab, h],
        w,
    ));
    out.push(TensorSpec::new(
        format!("{lm}.model.embed_tokens.additional_embedding.weight"),
        &[NUM_ADDITIONAL, h],
        w,
    ));
    for i in 0..t.num_hidden_layers {
        let b = format!("{lm}.model.layers.{i}");
        out.push(TensorSpec::new(
            format!("{b}.self_attn.qkv_proj.weight"),
            &[qkv, h],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{b}.self_attn.o_proj.weight"),
            &[h, h],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{b}.mlp.gate_up_proj.weight"),
            &[2 * t.intermediate_size, h],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{b}.mlp.down_proj.weight"),
            &[h, t.intermediate_size],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{b}.input_layernorm.weight"),
            &[h],
            norm,
        ));
        out.push(TensorSpec::new(
            format!("{b}.post_attention_layernorm.weight"),
            &[h],
            norm,
        ));
    }
    out.push(TensorSpec::new(
        format!("{lm}.model.norm.weight"),
        &[h],
        norm,
    ));
    out.push(TensorSpec::new(
        format!("{lm}.lm_head.weight"),
        &[vocab, h],
        w,
    ));
    out.push(TensorSpec::new(format!("{lm}.lm_head.bias"), &[vocab], w));
    out.push(TensorSpec::new(
        format!("{lm}.lm_head.additional_fc.weight"),
        &[NUM_ADDITIONAL, h],
        w,
    ));
    out.push(TensorSpec::new(
        format!("{lm}.lm_head.additional_fc.bias"),
        &[NUM_ADDITIONAL],
        w,
    ));
    out
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

    #[test]
    fn real_instruct_layout_has_666_tensors_and_4_589_362_243_parameters() {
        let cfg = Blip3Config::instruct_r_v1();
        let specs = tensor_specs(&cfg, true);
        assert_eq!(specs.len(), 666);
        let params: usize = specs.iter().map(TensorSpec::numel).sum();
        assert_eq!(params, 4_589_362_243);
        let base: usize = tensor_specs(&cfg, false)
            .iter()
            .map(TensorSpec::numel)
            .sum();
        assert_eq!(base, 4_583_789_123);
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
