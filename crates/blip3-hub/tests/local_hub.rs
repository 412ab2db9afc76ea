//! Downloads the bundled tiny model from a local HTTP server that answers the
//! way the Hugging Face Hub does (model-info API with blob ids, `resolve`
//! URLs with Range support): no network needed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use blip3_hub::{resolve, HubConfig, HubError, NoProgress};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/blip3-tiny/model")
}

/// Serves `files` as repo `test/tiny`; counts the body bytes it sends.
fn serve(files: HashMap<String, Vec<u8>>, sent: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut range = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                }
            }
            let (status, body): (&str, Vec<u8>) = if path
                .starts_with("/api/models/test/tiny/revision/main")
            {
                let siblings: Vec<_> = files
                    .iter()
                    .map(|(name, data)| {
                        let id = format!("{:040x}", data.len() as u128 * 7919 + name.len() as u128);
                        if name.ends_with(".safetensors") {
                            serde_json::json!({"rfilename": name, "blobId": id, "size": data.len(),
                                "lfs": {"sha256": format!("{:064x}", data.len() as u128 * 31 + 1), "size": data.len()}})
                        } else {
                            serde_json::json!({"rfilename": name, "blobId": id, "size": data.len()})
                        }
                    })
                    .chain(std::iter::once(serde_json::json!({"rfilename": "modeling_blip_3.py", "blobId": "ff", "size": 1})))
                    .collect();
                (
                    "200 OK",
                    serde_json::json!({"sha": COMMIT, "siblings": siblings})
                        .to_string()
                        .into_bytes(),
                )
            } else if let Some(name) = path.strip_prefix(&format!("/test/tiny/resolve/{COMMIT}/")) {
                match files.get(name) {
                    Some(data) => match range {
                        Some(from) if from < data.len() => {
                            ("206 Partial Content", data[from..].to_vec())
                        }
                        _ => ("200 OK", data.clone()),
                    },
                    None => ("404 Not Found", b"{}".to_vec()),
                }
            } else {
                ("404 Not Found", b"{}".to_vec())
            };
            sent.fetch_add(body.len() as u64, Ordering::Relaxed);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}")
}

fn fixture_files() -> HashMap<String, Vec<u8>> {
    std::fs::read_dir(model_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| {
            let mut data = Vec::new();
            std::fs::File::open(e.path())
                .unwrap()
                .read_to_end(&mut data)
                .unwrap();
            (e.file_name().to_string_lossy().into_owned(), data)
        })
        .collect()
}

fn same_files(a: &Path, files: &HashMap<String, Vec<u8>>) {
    for (name, data) in files {
        if blip3_hub::wanted(name) {
            assert_eq!(&std::fs::read(a.join(name)).unwrap(), data, "{name}");
        }
    }
}

#[test]
fn downloads_resumes_and_works_offline() {
    let files = fixture_files();
    let sent = Arc::new(AtomicU64::new(0));
    let endpoint = serve(files.clone(), sent.clone());
    let cache = std::env::temp_dir().join(format!("blip3-hub-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let config = HubConfig {
        endpoint,
        cache_dir: cache.clone(),
        offline: false,
        token: None,
    };

    // A half-written weights blob from an interrupted run is resumed, not restarted.
    let weights = files
        .get("model.safetensors")
        .expect("fixture has model.safetensors");
    let repo = cache.join("models--test--tiny");
    let blob = repo
        .join("blobs")
        .join(format!("{:064x}", weights.len() as u128 * 31 + 1));
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    let half = weights.len() / 2;
    std::fs::write(blob.with_extension("incomplete"), &weights[..half]).unwrap();

    let dir = resolve("test/tiny", &config, &mut NoProgress).unwrap();
    assert_eq!(dir, repo.join("snapshots").join(COMMIT));
    same_files(&dir, &files);
    assert!(
        !dir.join("modeling_blip_3.py").exists(),
        "code files are not fetched"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );
    let total: usize = files
        .iter()
        .filter(|(n, _)| blip3_hub::wanted(n))
        .map(|(_, d)| d.len())
        .sum();
    let body_bytes = sent.load(Ordering::Relaxed) as usize;
    assert!(
        body_bytes < total,
        "resumed download sent {body_bytes} of {total} bytes"
    );
    #[cfg(unix)]
    assert!(std::fs::symlink_metadata(dir.join("config.json"))
        .unwrap()
        .file_type()
        .is_symlink());

    // Second resolve: nothing is downloaded again.
    let before = sent.load(Ordering::Relaxed);
    resolve("test/tiny", &config, &mut NoProgress).unwrap();
    let api_only = sent.load(Ordering::Relaxed) - before;
    assert!(api_only < 4096, "{api_only} bytes re-sent");

    // Offline: the cache answers; a model not in it gets a clear error.
    let offline = HubConfig {
        offline: true,
        endpoint: "http://127.0.0.1:9".into(),
        ..config.clone()
    };
    assert_eq!(
        resolve("test/tiny", &offline, &mut NoProgress).unwrap(),
        dir
    );
    let e = resolve("test/other", &offline, &mut NoProgress).unwrap_err();
    assert!(matches!(e, HubError::NotCached { .. }), "{e}");
    // Online but unreachable: falls back to the cache, or explains.
    assert_eq!(
        resolve(
            "test/tiny",
            &HubConfig {
                offline: false,
                ..offline.clone()
            },
            &mut NoProgress
        )
        .unwrap(),
        dir
    );
    let e = resolve(
        "test/other",
        &HubConfig {
            offline: false,
            ..offline
        },
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(e.to_string().contains("cannot fetch"), "{e}");
    // An unknown repository on a reachable Hub.
    let e = resolve("test/missing", &config, &mut NoProgress).unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    std::fs::remove_dir_all(&cache).unwrap();
}
