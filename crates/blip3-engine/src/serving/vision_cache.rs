//! Image-embedding cache: a repeated image skips the ViT.
//!
//! The key is the SHA-256 of the image file's bytes, the preprocessing mode
//! (`detail`) and the model revision (a hash of the model's config files), so
//! a different model or setting never reuses an entry. What is cached is the
//! regrouped ViT output: the perceiver is conditioned on the prompt text, so it
//! reruns per request (about a tenth of the ViT's cost).
//!
//! Two tiers: RAM, least-recently-used under a byte budget, and optionally a
//! folder on disk (one file per entry, written atomically) that survives
//! restarts and is consulted on a RAM miss.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;

use crate::{EncodedImage, ImageInfo};
use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

/// A cache key (hex of the SHA-256 over image bytes, mode and revision).
pub type Key = String;

/// The key of an image under a preprocessing mode and model revision.
pub fn key(image_bytes: &[u8], mode: &str, revision: &str) -> Key {
    let mut h = Sha256::new();
    h.update(revision.as_bytes());
    h.update([0]);
    h.update(mode.as_bytes());
    h.update([0]);
    h.update(image_bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Two-tier LRU of encoded images.
pub struct VisionCache {
    budget: usize,
    bytes: usize,
    entries: HashMap<Key, EncodedImage>,
    order: VecDeque<Key>,
    disk: Option<PathBuf>,
}

/// Where a lookup was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The RAM tier.
    Ram,
    /// The disk tier (now promoted to RAM).
    Disk,
}

impl VisionCache {
    /// A cache holding at most `budget` bytes in RAM, with an optional disk folder.
    pub fn new(budget: usize, disk: Option<PathBuf>) -> std::io::Result<Self> {
        if let Some(dir) = &disk {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self {
            budget,
            bytes: 0,
            entries: HashMap::new(),
            order: VecDeque::new(),
            disk,
        })
    }

    /// Bytes held in RAM.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Looks `key` up in RAM, then on disk.
    pub fn get(&mut self, key: &str) -> Option<(EncodedImage, Tier)> {
        if let Some(hit) = self.entries.get(key).cloned() {
            self.touch(key);
            return Some((hit, Tier::Ram));
        }
        let path = self.disk.as_ref()?.join(format!("{key}.bin"));
        match read_entry(&path) {
            Ok(Some(image)) => {
                self.insert_ram(key.to_string(), image.clone());
                Some((image, Tier::Disk))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("ignoring unreadable cache file {}: {e}", path.display());
                None
            }
        }
    }

    /// Stores an entry in RAM (evicting the least recently used) and on disk.
    pub fn insert(&mut self, key: Key, image: EncodedImage) {
        if let Some(dir) = &self.disk {
            let path = dir.join(format!("{key}.bin"));
            if let Err(e) = write_entry(&path, &image) {
                tracing::warn!("cannot write cache file {}: {e}", path.display());
            }
        }
        self.insert_ram(key, image);
    }

    fn insert_ram(&mut self, key: Key, image: EncodedImage) {
        let size = image.size_bytes();
        if size > self.budget {
            return;
        }
        if let Some(old) = self.entries.remove(&key) {
            self.bytes -= old.size_bytes();
            self.order.retain(|k| k != &key);
        }
        while self.bytes + size > self.budget {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.entries.remove(&oldest) {
                self.bytes -= old.size_bytes();
            }
        }
        self.bytes += size;
        self.order.push_back(key.clone());
        self.entries.insert(key, image);
    }

    fn touch(&mut self, key: &str) {
        if let Some(pos) = self.order.iter().position(|k| k == key) {
            if let Some(k) = self.order.remove(pos) {
                self.order.push_back(k);
            }
        }
    }
}

/// File layout: u64 LE header length, JSON header `{dims, info}`, F32 LE data.
fn write_entry(path: &std::path::Path, image: &EncodedImage) -> std::io::Result<()> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let values: Vec<f32> = image
        .features
        .flatten_all()
        .and_then(|t| t.to_vec1())
        .map_err(|e| invalid(e.to_string()))?;
    let header = serde_json::json!({
        "dims": image.features.dims(),
        "info": image.info,
    })
    .to_string();
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(&(header.len() as u64).to_le_bytes())?;
        f.write_all(header.as_bytes())?;
        for v in values {
            f.write_all(&v.to_le_bytes())?;
        }
        f.flush()?;
    }
    std::fs::rename(tmp, path)
}

fn read_entry(path: &std::path::Path) -> std::io::Result<Option<EncodedImage>> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid("truncated header".into()))?;
    let hlen =
        usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|e| invalid(e.to_string()))?;
    let header = bytes
        .get(8..8 + hlen)
        .ok_or_else(|| invalid("truncated header".into()))?;
    let header: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| invalid(e.to_string()))?;
    let dims: Vec<usize> =
        serde_json::from_value(header["dims"].clone()).map_err(|e| invalid(e.to_string()))?;
    let info: CachedInfo =
        serde_json::from_value(header["info"].clone()).map_err(|e| invalid(e.to_string()))?;
    let data = &bytes[8 + hlen..];
    let count: usize = dims.iter().product();
    if data.len() != count * 4 {
        return Err(invalid(format!(
            "{} data bytes for dims {dims:?}",
            data.len()
        )));
    }
    let values: Vec<f32> = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let features =
        Tensor::from_vec(values, dims, &Device::Cpu).map_err(|e| invalid(e.to_string()))?;
    let info = ImageInfo {
        image_size: info.image_size,
        best_resolution: info.best_resolution,
        grid: info.grid,
        num_crops: info.num_crops,
    };
    EncodedImage::from_features(features, info)
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}

#[derive(serde::Deserialize)]
struct CachedInfo {
    image_size: (usize, usize),
    best_resolution: (usize, usize),
    grid: (usize, usize),
    num_crops: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` crops: the global view plus an (n − 1) × 1 grid.
    fn entry(n: usize, fill: f32) -> EncodedImage {
        EncodedImage::from_features(
            Tensor::from_vec(vec![fill; n * 4], (n, 4, 1), &Device::Cpu).unwrap(),
            ImageInfo {
                image_size: (10, 20),
                best_resolution: (42, 42),
                grid: (n.saturating_sub(1).max(1), 1),
                num_crops: n,
            },
        )
        .unwrap()
    }

    #[test]
    fn lru_evicts_oldest_within_budget() {
        let size = entry(3, 1.0).size_bytes();
        let mut c = VisionCache::new(2 * size, None).unwrap();
        c.insert("a".into(), entry(3, 1.0));
        c.insert("b".into(), entry(3, 2.0));
        assert!(c.get("a").is_some()); // a is now the most recent
        c.insert("c".into(), entry(3, 3.0));
        assert!(c.get("b").is_none());
        assert!(c.get("a").is_some() && c.get("c").is_some());
        assert_eq!(c.bytes(), 2 * size);
    }

    #[test]
    fn disk_tier_round_trips_and_survives_a_new_cache() {
        let dir = std::env::temp_dir().join(format!("blip3-vcache-{}", std::process::id()));
        let mut c = VisionCache::new(1 << 20, Some(dir.clone())).unwrap();
        c.insert("k".into(), entry(2, 0.5));
        let mut fresh = VisionCache::new(1 << 20, Some(dir.clone())).unwrap();
        let (got, tier) = fresh.get("k").unwrap();
        assert_eq!(tier, Tier::Disk);
        assert_eq!(got.info, entry(2, 0.5).info);
        assert_eq!(got.padding_mask, entry(2, 0.5).padding_mask);
        let v: Vec<f32> = got.features.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|&x| x == 0.5));
        assert_eq!(fresh.get("k").unwrap().1, Tier::Ram);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn keys_depend_on_bytes_mode_and_revision() {
        let k = key(b"img", "high", "r1");
        assert_ne!(k, key(b"img", "low", "r1"));
        assert_ne!(k, key(b"img", "high", "r2"));
        assert_ne!(k, key(b"imh", "high", "r1"));
        assert_eq!(k.len(), 64);
    }
}
