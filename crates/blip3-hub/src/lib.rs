//! Resolving `--model` to a local folder: either a folder path, or a Hugging
//! Face Hub id (`Salesforce/xgen-mm-phi3-mini-instruct-r-v1`) fetched into the
//! standard Hugging Face cache, so files already downloaded by Python tools are
//! reused and ours are reused by them.
//!
//! Cache layout (as `huggingface_hub` writes it), under `HF_HUB_CACHE` or
//! `$HF_HOME/hub` (default `~/.cache/huggingface/hub`):
//!
//! ```text
//! models--{owner}--{name}/
//!   blobs/{etag}                     file contents (LFS sha256, or git blob id)
//!   blobs/{etag}.incomplete          a download in progress (resumed with Range)
//!   refs/{revision}                  the commit a branch or tag pointed to
//!   snapshots/{commit}/{filename}    symlinks to ../../blobs/{etag}
//! ```
//!
//! Environment, as in `huggingface_hub`: `HF_ENDPOINT` (default
//! `https://huggingface.co`), `HF_HUB_OFFLINE=1` (cache only), `HF_TOKEN` or
//! the `token` file in `HF_HOME` (gated or private repos).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a model could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Offline mode and the model is not (completely) in the cache.
    #[error("model {repo} (revision {revision}) is not in the Hugging Face cache at {cache} and HF_HUB_OFFLINE is set: download it once online, or pass a local folder")]
    NotCached {
        /// Repository id.
        repo: String,
        /// Requested revision.
        revision: String,
        /// Cache folder searched.
        cache: PathBuf,
    },
    /// The Hub could not be reached or refused the request.
    #[error("cannot fetch {url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong (status or transport error).
        reason: String,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The argument is neither a folder nor an `owner/name` id.
    #[error("'{0}' is neither a model folder nor a Hugging Face model id (owner/name)")]
    NotAModel(String),
    /// The Hub answered something unexpected.
    #[error("unexpected answer from the Hub for {repo}: {reason}")]
    Protocol {
        /// Repository id.
        repo: String,
        /// Details.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HubError + '_ {
    move |source| HubError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where and how to fetch.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Base URL of the Hub.
    pub endpoint: String,
    /// The `hub` cache folder.
    pub cache_dir: PathBuf,
    /// Use only the cache.
    pub offline: bool,
    /// Bearer token.
    pub token: Option<String>,
}

impl HubConfig {
    /// Settings from the standard Hugging Face environment variables.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let base = var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"));
            base.join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        });
        let token = var("HF_TOKEN").or_else(|| {
            fs::read_to_string(hf_home.join("token"))
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        Self {
            endpoint: var("HF_ENDPOINT")
                .unwrap_or_else(|| "https://huggingface.co".into())
                .trim_end_matches('/')
                .to_string(),
            cache_dir,
            offline,
            token,
        }
    }
}

/// Progress callbacks for downloads (the CLI draws bars with them).
pub trait Progress {
    /// A file of `size` bytes starts, `done` of them already present (resume).
    fn start(&mut self, file: &str, size: u64, done: u64);
    /// `n` more bytes arrived.
    fn advance(&mut self, n: u64);
    /// The file is complete.
    fn finish(&mut self);
}

/// Progress that reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _: &str, _: u64, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// True when `name` is a file the engine reads (configs, tokenizer, weights).
pub fn wanted(name: &str) -> bool {
    !name.contains('/')
        && (name.ends_with(".json") || name.ends_with(".safetensors") || name == "tokenizer.model")
}

/// `model` as a local folder: returned as is when it is a directory,
/// otherwise treated as `owner/name[@revision]` and resolved through the cache.
pub fn resolve(
    model: &str,
    config: &HubConfig,
    progress: &mut dyn Progress,
) -> Result<PathBuf, HubError> {
    let path = Path::new(model);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let (repo, revision) = match model.split_once('@') {
        Some((r, rev)) => (r, rev),
        None => (model, "main"),
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !s.starts_with('.')
    };
    match repo.split_once('/') {
        Some((owner, name)) if valid(owner) && valid(name) => {}
        _ => return Err(HubError::NotAModel(model.to_string())),
    }
    let repo_dir = config
        .cache_dir
        .join(format!("models--{}", repo.replace('/', "--")));
    if config.offline {
        return cached_snapshot(&repo_dir, revision).ok_or_else(|| HubError::NotCached {
            repo: repo.into(),
            revision: revision.into(),
            cache: config.cache_dir.clone(),
        });
    }
    match download(repo, revision, &repo_dir, config, progress) {
        Ok(dir) => Ok(dir),
        Err(e @ HubError::Http { .. }) => match cached_snapshot(&repo_dir, revision) {
            Some(dir) => {
                tracing::warn!("{e}; using the cached snapshot {}", dir.display());
                Ok(dir)
            }
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// The snapshot folder of a cached revision, if it holds a `config.json`.
fn cached_snapshot(repo_dir: &Path, revision: &str) -> Option<PathBuf> {
    let commit = if is_commit(revision) {
        revision.to_string()
    } else {
        fs::read_to_string(repo_dir.join("refs").join(revision))
            .ok()?
            .trim()
            .to_string()
    };
    let dir = repo_dir.join("snapshots").join(commit);
    dir.join("config.json").is_file().then_some(dir)
}

fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[derive(Deserialize)]
struct ModelInfo {
    sha: String,
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    size: Option<u64>,
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(60))
        .redirects(8)
        .build()
}

fn get(
    agent: &ureq::Agent,
    url: &str,
    config: &HubConfig,
    range: Option<u64>,
) -> Result<ureq::Response, HubError> {
    let mut req = agent.get(url).set("User-Agent", "blip3-rs");
    if let Some(t) = &config.token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    if let Some(from) = range {
        req = req.set("Range", &format!("bytes={from}-"));
    }
    req.call().map_err(|e| HubError::Http {
        url: url.to_string(),
        reason: match e {
            ureq::Error::Status(401 | 403, _) => {
                "access denied (gated or private repository: set HF_TOKEN)".into()
            }
            ureq::Error::Status(404, _) => "not found (check the model id and revision)".into(),
            ureq::Error::Status(code, r) => format!("HTTP {code} {}", r.status_text()),
            ureq::Error::Transport(t) => {
                format!("{t} (offline? set HF_HUB_OFFLINE=1 to use the cache)")
            }
        },
    })
}

fn download(
    repo: &str,
    revision: &str,
    repo_dir: &Path,
    config: &HubConfig,
    progress: &mut dyn Progress,
) -> Result<PathBuf, HubError> {
    let agent = agent();
    let url = format!(
        "{}/api/models/{repo}/revision/{revision}?blobs=true",
        config.endpoint
    );
    let body = get(&agent, &url, config, None)?
        .into_string()
        .map_err(|e| HubError::Http {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let info: ModelInfo = serde_json::from_str(&body).map_err(|e| HubError::Protocol {
        repo: repo.into(),
        reason: e.to_string(),
    })?;
    if !is_commit(&info.sha) {
        return Err(HubError::Protocol {
            repo: repo.into(),
            reason: format!("'{}' is not a commit id", info.sha),
        });
    }
    let snapshot = repo_dir.join("snapshots").join(&info.sha);
    let blobs = repo_dir.join("blobs");
    fs::create_dir_all(&snapshot).map_err(io(&snapshot))?;
    fs::create_dir_all(&blobs).map_err(io(&blobs))?;
    if !info.siblings.iter().any(|s| s.rfilename == "config.json") {
        return Err(HubError::Protocol {
            repo: repo.into(),
            reason: "the repository has no config.json".into(),
        });
    }
    for file in info.siblings.iter().filter(|s| wanted(&s.rfilename)) {
        let (etag, size) = match (&file.lfs, &file.blob_id) {
            (Some(lfs), _) => (lfs.sha256.clone(), Some(lfs.size)),
            (None, Some(id)) => (id.clone(), file.size),
            (None, None) => {
                return Err(HubError::Protocol {
                    repo: repo.into(),
                    reason: format!("no blob id for {}", file.rfilename),
                })
            }
        };
        if !etag.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(HubError::Protocol {
                repo: repo.into(),
                reason: format!("bad blob id for {}", file.rfilename),
            });
        }
        let blob = blobs.join(&etag);
        if !blob.is_file() {
            let url = format!(
                "{}/{repo}/resolve/{}/{}",
                config.endpoint, info.sha, file.rfilename
            );
            fetch_blob(&agent, &url, &blob, size, &file.rfilename, config, progress)?;
        }
        let link = snapshot.join(&file.rfilename);
        if fs::symlink_metadata(&link).is_err() {
            link_blob(&blob, &etag, &link)?;
        }
    }
    if !is_commit(revision) {
        let refs = repo_dir.join("refs");
        fs::create_dir_all(&refs).map_err(io(&refs))?;
        let r = refs.join(revision);
        fs::write(&r, &info.sha).map_err(io(&r))?;
    }
    Ok(snapshot)
}

/// Downloads into `{blob}.incomplete` (resuming what is there) then renames.
fn fetch_blob(
    agent: &ureq::Agent,
    url: &str,
    blob: &Path,
    size: Option<u64>,
    name: &str,
    config: &HubConfig,
    progress: &mut dyn Progress,
) -> Result<(), HubError> {
    let partial = blob.with_extension("incomplete");
    let mut have = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    if size.is_some_and(|s| have > s) {
        have = 0;
    }
    let response = get(agent, url, config, (have > 0).then_some(have))?;
    let resumed = response.status() == 206;
    if !resumed {
        have = 0;
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&partial)
        .map_err(io(&partial))?;
    progress.start(name, size.unwrap_or(0), have);
    let mut reader = response.into_reader();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = have;
    loop {
        let n = reader.read(&mut buf).map_err(|e| HubError::Http {
            url: url.to_string(),
            reason: format!("transfer interrupted after {total} bytes: {e} (rerun to resume)"),
        })?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(io(&partial))?;
        total += n as u64;
        progress.advance(n as u64);
    }
    file.flush().map_err(io(&partial))?;
    drop(file);
    if let Some(expected) = size {
        if total != expected {
            return Err(HubError::Http {
                url: url.to_string(),
                reason: format!("got {total} of {expected} bytes (rerun to resume)"),
            });
        }
    }
    fs::rename(&partial, blob).map_err(io(blob))?;
    progress.finish();
    Ok(())
}

/// `snapshots/{commit}/{file}` → `../../blobs/{etag}` (a copy where symlinks fail).
fn link_blob(blob: &Path, etag: &str, link: &Path) -> Result<(), HubError> {
    #[cfg(unix)]
    {
        let target = Path::new("../../blobs").join(etag);
        if std::os::unix::fs::symlink(&target, link).is_ok() {
            return Ok(());
        }
    }
    let _ = etag;
    fs::copy(blob, link).map(|_| ()).map_err(io(link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_folders_are_told_apart() {
        let config = HubConfig {
            endpoint: "http://127.0.0.1:9".into(),
            cache_dir: std::env::temp_dir().join("blip3-hub-empty-cache"),
            offline: true,
            token: None,
        };
        let here = env!("CARGO_MANIFEST_DIR");
        assert_eq!(
            resolve(here, &config, &mut NoProgress).unwrap(),
            PathBuf::from(here)
        );
        for bad in [
            "no-slash",
            "a/b/c",
            "../x/y",
            "a/.hidden",
            "/nonexistent/dir",
        ] {
            assert!(
                matches!(
                    resolve(bad, &config, &mut NoProgress),
                    Err(HubError::NotAModel(_))
                ),
                "{bad}"
            );
        }
        let e = resolve("Salesforce/blip3-x", &config, &mut NoProgress).unwrap_err();
        assert!(matches!(e, HubError::NotCached { .. }));
        assert!(e.to_string().contains("HF_HUB_OFFLINE"));
    }

    #[test]
    fn wanted_files() {
        for f in [
            "config.json",
            "model-00001-of-00002.safetensors",
            "tokenizer.model",
        ] {
            assert!(wanted(f), "{f}");
        }
        for f in [
            "modeling_blip_3.py",
            "pytorch_model.bin",
            "sub/config.json",
            "README.md",
        ] {
            assert!(!wanted(f), "{f}");
        }
    }
}
