//! Turning an `image_url` into image bytes, under the server's media policy.
//!
//! * `data:image/...;base64,...`: always accepted (size-capped);
//! * `file:///path`: only with `--media-root`, and only for files inside it
//!   after resolving `..` and symlinks;
//! * `http(s)://`: only with `--allow-remote-media`, capped in size
//!   (`max_image_bytes`, checked while reading), time (connect 5 s, whole
//!   transfer `remote_timeout`) and redirects (3).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

use crate::error::ApiError;

/// Limits and permissions for media referenced by requests.
#[derive(Debug, Clone)]
pub struct MediaPolicy {
    /// Folder `file://` URLs may read from (none: `file://` refused).
    pub media_root: Option<PathBuf>,
    /// Largest image file, in bytes.
    pub max_image_bytes: usize,
    /// Whether `http(s)://` image URLs are fetched.
    pub allow_remote: bool,
    /// Time limit for one remote fetch.
    pub remote_timeout: Duration,
}

/// Most redirects followed for a remote image.
const MAX_REDIRECTS: u32 = 3;

const PARAM: &str = "messages.content.image_url.url";

/// The bytes of the image an `image_url` points to.
pub fn fetch(url: &str, policy: &MediaPolicy) -> Result<Vec<u8>, ApiError> {
    if let Some(rest) = url.strip_prefix("data:") {
        return decode_data_url(rest, policy);
    }
    if let Some(path) = url.strip_prefix("file://") {
        return read_file(path, policy);
    }
    let scheme = url.split(':').next().unwrap_or("");
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
        if !policy.allow_remote {
            return Err(ApiError::invalid(
                "remote image URLs are disabled (start the server with --allow-remote-media, or send a data: URL)",
                Some(PARAM),
            )
            .with_code("remote_media_disabled"));
        }
        return fetch_remote(url, policy);
    }
    Err(ApiError::invalid(
        format!(
            "unsupported image URL scheme '{}': use a data: URL",
            truncate(scheme, 16)
        ),
        Some(PARAM),
    ))
}

fn decode_data_url(rest: &str, policy: &MediaPolicy) -> Result<Vec<u8>, ApiError> {
    let Some((meta, payload)) = rest.split_once(',') else {
        return Err(ApiError::invalid(
            "malformed data: URL (no ',')",
            Some(PARAM),
        ));
    };
    if !meta.ends_with(";base64") {
        return Err(ApiError::invalid(
            "data: URLs must be base64-encoded (';base64,')",
            Some(PARAM),
        ));
    }
    let mime = &meta[..meta.len() - ";base64".len()];
    if !(mime.is_empty() || mime.starts_with("image/") || mime == "application/octet-stream") {
        return Err(ApiError::invalid(
            format!(
                "data: URL media type '{}' is not an image",
                truncate(mime, 40)
            ),
            Some(PARAM),
        ));
    }
    // base64 is 4/3 of the decoded size: reject oversized payloads before decoding.
    if payload.len() / 4 * 3 > policy.max_image_bytes + 3 {
        return Err(ApiError::too_large(
            format!(
                "image of about {} bytes exceeds the limit of {} bytes",
                payload.len() / 4 * 3,
                policy.max_image_bytes
            ),
            Some(PARAM),
        ));
    }
    let cleaned: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|e| ApiError::invalid(format!("invalid base64 in data: URL: {e}"), Some(PARAM)))?;
    if bytes.len() > policy.max_image_bytes {
        return Err(ApiError::too_large(
            format!(
                "image of {} bytes exceeds the limit of {} bytes",
                bytes.len(),
                policy.max_image_bytes
            ),
            Some(PARAM),
        ));
    }
    Ok(bytes)
}

fn fetch_remote(url: &str, policy: &MediaPolicy) -> Result<Vec<u8>, ApiError> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout(policy.remote_timeout)
        .redirects(MAX_REDIRECTS)
        .build();
    let failed = |reason: String| {
        ApiError::invalid(format!("cannot fetch the image URL: {reason}"), Some(PARAM))
            .with_code("remote_media_failed")
    };
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, _) => failed(format!("HTTP {code}")),
        ureq::Error::Transport(t) => failed(t.to_string()),
    })?;
    if let Some(len) = response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > policy.max_image_bytes {
            return Err(ApiError::too_large(
                format!(
                    "remote image of {len} bytes exceeds the limit of {} bytes",
                    policy.max_image_bytes
                ),
                Some(PARAM),
            ));
        }
    }
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(policy.max_image_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| failed(e.to_string()))?;
    if bytes.len() > policy.max_image_bytes {
        return Err(ApiError::too_large(
            format!(
                "remote image exceeds the limit of {} bytes",
                policy.max_image_bytes
            ),
            Some(PARAM),
        ));
    }
    Ok(bytes)
}

fn read_file(path: &str, policy: &MediaPolicy) -> Result<Vec<u8>, ApiError> {
    let Some(root) = &policy.media_root else {
        return Err(ApiError::invalid(
            "file:// image URLs are disabled (start the server with --media-root)",
            Some(PARAM),
        )
        .with_code("file_media_disabled"));
    };
    let denied = || {
        ApiError::invalid(
            "file:// image URL is outside the media root or does not exist",
            Some(PARAM),
        )
    };
    let root = root.canonicalize().map_err(|_| denied())?;
    let resolved = Path::new(path).canonicalize().map_err(|_| denied())?;
    if !resolved.starts_with(&root) || !resolved.is_file() {
        return Err(denied());
    }
    let size = std::fs::metadata(&resolved).map_err(|_| denied())?.len();
    if size > policy.max_image_bytes as u64 {
        return Err(ApiError::too_large(
            format!(
                "image of {size} bytes exceeds the limit of {} bytes",
                policy.max_image_bytes
            ),
            Some(PARAM),
        ));
    }
    std::fs::read(&resolved).map_err(|_| denied())
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(root: Option<PathBuf>) -> MediaPolicy {
        MediaPolicy {
            media_root: root,
            max_image_bytes: 64,
            allow_remote: false,
            remote_timeout: Duration::from_secs(5),
        }
    }

    /// A loopback HTTP server answering each path from `routes` (status, extra header, body).
    fn serve(routes: Vec<(&'static str, &'static str, &'static str, Vec<u8>)>) -> String {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let (status, header, body) = routes
                    .iter()
                    .find(|r| r.0 == path)
                    .map(|r| (r.1, r.2, r.3.clone()))
                    .unwrap_or(("404 Not Found", "", Vec::new()));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{header}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn remote_urls_need_the_flag_and_are_capped() {
        let base = serve(vec![
            ("/ok.png", "200 OK", "", b"small".to_vec()),
            ("/big.png", "200 OK", "", vec![0u8; 100]),
            ("/moved", "302 Found", "Location: /ok.png\r\n", Vec::new()),
            ("/loop", "302 Found", "Location: /loop\r\n", Vec::new()),
        ]);
        let url = |p: &str| format!("{base}{p}");
        let off = fetch(&url("/ok.png"), &policy(None)).unwrap_err();
        assert_eq!(off.code, Some("remote_media_disabled"));
        let on = MediaPolicy {
            allow_remote: true,
            ..policy(None)
        };
        assert_eq!(fetch(&url("/ok.png"), &on).unwrap(), b"small");
        assert_eq!(fetch(&url("/moved"), &on).unwrap(), b"small");
        assert_eq!(
            fetch(&url("/big.png"), &on).unwrap_err().status.as_u16(),
            413
        );
        assert!(fetch(&url("/loop"), &on)
            .unwrap_err()
            .message
            .contains("cannot fetch"));
        assert!(fetch(&url("/missing"), &on)
            .unwrap_err()
            .message
            .contains("404"));
    }

    #[test]
    fn data_urls_decode_and_are_capped() {
        let ok = fetch("data:image/png;base64,aGVsbG8=", &policy(None)).unwrap();
        assert_eq!(ok, b"hello");
        let e = fetch("data:image/png;base64,!!!", &policy(None)).unwrap_err();
        assert!(e.message.contains("base64"));
        let big = format!("data:image/png;base64,{}", "A".repeat(400));
        assert_eq!(fetch(&big, &policy(None)).unwrap_err().status.as_u16(), 413);
        let e = fetch("data:text/plain;base64,aGVsbG8=", &policy(None)).unwrap_err();
        assert!(e.message.contains("not an image"));
    }

    #[test]
    fn file_urls_need_a_root_and_stay_inside_it() {
        let dir = std::env::temp_dir().join(format!("blip3-media-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("in")).unwrap();
        std::fs::write(dir.join("in/a.png"), b"abc").unwrap();
        std::fs::write(dir.join("secret"), b"xyz").unwrap();
        let url = format!("file://{}", dir.join("in/a.png").display());
        assert!(fetch(&url, &policy(None)).is_err());
        let p = policy(Some(dir.join("in")));
        assert_eq!(fetch(&url, &p).unwrap(), b"abc");
        let escape = format!("file://{}/in/../secret", dir.display());
        assert!(fetch(&escape, &p).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn remote_by_default_and_unknown_schemes_are_refused() {
        let e = fetch("https://example.com/a.png", &policy(None)).unwrap_err();
        assert_eq!(e.code, Some("remote_media_disabled"));
        assert!(fetch("ftp://x/y", &policy(None)).is_err());
    }
}
