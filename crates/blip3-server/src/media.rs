//! Turning an `image_url` into image bytes, under the server's media policy.
//!
//! * `data:image/...;base64,...`: always accepted (size-capped);
//! * `file:///path` (or `file://localhost/path`, percent-decoded): only with
//!   `--media-root`, and only for files inside it after resolving `..` and
//!   symlinks;
//! * `http(s)://`: only with `--allow-remote-media`, capped in size
//!   (`max_image_bytes`, checked while reading), time (connect 5 s, whole
//!   transfer `remote_timeout`) and redirects (3).
//!
//! Remote fetches are the server making requests on a client's behalf, so
//! they must not reach what only the server can reach (server-side request
//! forgery). Every hop, the first URL and each redirect target, is checked
//! before any connection: the scheme must be http(s); the host is resolved
//! here, and if any of its addresses is loopback, private, link-local (cloud
//! metadata at 169.254.169.254 included), carrier-grade NAT, multicast,
//! broadcast, unspecified or reserved, IPv4 or IPv6, embedded IPv4 forms
//! (mapped, compatible, NAT64, 6to4) included, the fetch is refused unless
//! the operator named the host with `--allow-media-host`. The connection
//! then goes to the addresses checked, not to a second lookup, so a name
//! cannot resolve to a public address for the check and a private one for
//! the connection. Errors say what was refused, never what the remote side
//! answered (no status, no body bytes, no connect error text): they would
//! make the server a port scanner and a read-back oracle.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use crate::error::ApiError;

/// Looks up the addresses of `host` for `port` (tests inject one).
pub type ResolveFn = dyn Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>> + Send + Sync;

/// The host-name lookup remote fetches use.
#[derive(Clone)]
pub struct HostResolver(pub Arc<ResolveFn>);

impl HostResolver {
    /// The operating system's resolver.
    pub fn system() -> Self {
        Self(Arc::new(|host, port| {
            Ok((host, port).to_socket_addrs()?.collect())
        }))
    }
}

impl std::fmt::Debug for HostResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostResolver")
    }
}

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
    /// Hosts (names or addresses, as written in URLs) fetched even when they
    /// resolve to loopback, private or link-local addresses.
    pub allowed_hosts: Vec<String>,
    /// Host-name lookup for remote fetches.
    pub resolver: HostResolver,
}

impl Default for MediaPolicy {
    fn default() -> Self {
        Self {
            media_root: None,
            max_image_bytes: 20 << 20,
            allow_remote: false,
            remote_timeout: Duration::from_secs(10),
            allowed_hosts: Vec::new(),
            resolver: HostResolver::system(),
        }
    }
}

/// Most redirects followed for a remote image.
const MAX_REDIRECTS: usize = 3;

const PARAM: &str = "messages.content.image_url.url";

/// The bytes of the image an `image_url` points to.
pub fn fetch(url: &str, policy: &MediaPolicy) -> Result<Vec<u8>, ApiError> {
    if let Some(rest) = url.strip_prefix("data:") {
        return decode_data_url(rest, policy);
    }
    let scheme = url.split(':').next().unwrap_or("");
    if scheme.eq_ignore_ascii_case("file") {
        return read_file(url, policy);
    }
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
    if payload.len() / 4 * 3 > policy.max_image_bytes.saturating_add(3) {
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

/// Why a remote fetch failed, without anything the remote side said.
fn remote_failed(reason: &str) -> ApiError {
    ApiError::invalid(format!("cannot fetch the image URL: {reason}"), Some(PARAM))
        .with_code("remote_media_failed")
}

fn remote_refused(reason: String) -> ApiError {
    ApiError::invalid(format!("image URL refused: {reason}"), Some(PARAM))
        .with_code("remote_media_refused")
}

fn fetch_remote(url: &str, policy: &MediaPolicy) -> Result<Vec<u8>, ApiError> {
    let mut current = url::Url::parse(url)
        .map_err(|_| ApiError::invalid("the image URL is not a valid URL", Some(PARAM)))?;
    for _hop in 0..=MAX_REDIRECTS {
        let addresses = vet(&current, policy)?;
        // Connect only to the addresses just checked; redirects are followed
        // here, one checked hop at a time.
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(policy.remote_timeout)
            .redirects(0)
            .resolver(move |_: &str| Ok(addresses.clone()))
            .build();
        let response = agent.get(current.as_str()).call().map_err(|e| match e {
            ureq::Error::Status(..) => remote_failed("the image server answered with an error"),
            ureq::Error::Transport(_) => remote_failed("no answer from the image server"),
        })?;
        if (300..400).contains(&response.status()) {
            let next = response
                .header("location")
                .and_then(|location| current.join(location).ok())
                .ok_or_else(|| remote_failed("a redirect without a valid location"))?;
            current = next;
            continue;
        }
        if !(200..300).contains(&response.status()) {
            return Err(remote_failed("the image server answered with an error"));
        }
        return read_capped(response, policy);
    }
    Err(remote_failed(&format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
}

/// The body of `response`, refused once it exceeds the image size cap.
fn read_capped(response: ureq::Response, policy: &MediaPolicy) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::too_large(
            format!(
                "remote image exceeds the limit of {} bytes",
                policy.max_image_bytes
            ),
            Some(PARAM),
        )
    };
    if let Some(len) = response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > policy.max_image_bytes {
            return Err(too_large());
        }
    }
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(policy.max_image_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| remote_failed("the transfer failed or took too long"))?;
    if bytes.len() > policy.max_image_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Checks one hop before connecting: an http(s) URL whose host resolves
/// only to addresses a client may reach through us (or a host the operator
/// allowed). Returns the addresses to connect to.
fn vet(url: &url::Url, policy: &MediaPolicy) -> Result<Vec<SocketAddr>, ApiError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(remote_refused(format!(
            "only http and https URLs are fetched (a redirect led to '{}:')",
            truncate(url.scheme(), 16)
        )));
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| remote_refused("the URL has no port".into()))?;
    let (name, literal): (String, Option<IpAddr>) = match url.host() {
        Some(url::Host::Domain(d)) => (d.to_ascii_lowercase(), None),
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
        None => return Err(remote_refused("the URL has no host".into())),
    };
    let addresses = match literal {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => (policy.resolver.0)(&name, port)
            .map_err(|_| remote_failed("the image host name does not resolve"))?,
    };
    if addresses.is_empty() {
        return Err(remote_failed("the image host name does not resolve"));
    }
    let allowed = policy.allowed_hosts.iter().any(|h| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h.eq_ignore_ascii_case(&name) || h.parse::<IpAddr>().is_ok_and(|ip| Some(ip) == literal)
    });
    if !allowed {
        if let Some(bad) = addresses.iter().find(|a| !is_public(a.ip())) {
            return Err(remote_refused(format!(
                "'{}' is a {} address (name the host with --allow-media-host to allow it)",
                truncate(&name, 64),
                if literal.is_some() {
                    kind_of(bad.ip())
                } else {
                    "name that resolves to a non-public"
                }
            )));
        }
    }
    Ok(addresses)
}

/// What kind of non-public address `ip` is, for error messages.
fn kind_of(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => "loopback",
        IpAddr::V6(v6) if v6.is_loopback() => "loopback",
        _ => "non-public",
    }
}

/// Whether `ip` is a public unicast address: the only kind a remote image
/// may come from without the operator's say-so.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let blocked = ip.is_unspecified()          // 0.0.0.0
        || a == 0                               // 0.0.0.0/8 "this network"
        || ip.is_loopback()                     // 127.0.0.0/8
        || ip.is_private()                      // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()                   // 169.254/16, cloud metadata
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 carrier-grade NAT
        || (a == 192 && b == 0 && c == 0)       // 192.0.0.0/24 protocol assignments
        || (a == 192 && b == 0 && c == 2)       // TEST-NET-1
        || (a == 198 && (18..20).contains(&b))  // 198.18/15 benchmarking
        || (a == 198 && b == 51 && c == 100)    // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)     // TEST-NET-3
        || ip.is_multicast()                    // 224/4
        || a >= 240; // 240/4 reserved, 255.255.255.255 broadcast
    !blocked
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // IPv4 carried inside IPv6 is judged as the IPv4 address it reaches.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4); // ::ffff:a.b.c.d
    }
    if s[..6] == [0; 6] {
        // ::a.b.c.d (deprecated IPv4-compatible), :: and ::1 included.
        return !ip.is_unspecified() && !ip.is_loopback() && is_public_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return is_public_v4(embedded_v4(s[6], s[7])); // 64:ff9b::/96 NAT64
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded_v4(s[1], s[2])); // 2002::/16 6to4
    }
    let blocked = ip.is_multicast()             // ff00::/8
        || (s[0] & 0xfe00) == 0xfc00            // fc00::/7 unique local (fd00:ec2::254 too)
        || (s[0] & 0xffc0) == 0xfe80            // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0            // fec0::/10 site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8)   // 2001:db8::/32 documentation
        || (s[0] == 0x0100 && s[1..4] == [0; 3]); // 100::/64 discard
    !blocked
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Reads a `file://` URL: `file:///abs/path` or `file://localhost/abs/path`,
/// percent-decoded, inside the media root.
fn read_file(url: &str, policy: &MediaPolicy) -> Result<Vec<u8>, ApiError> {
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
    let parsed = url::Url::parse(url)
        .map_err(|_| ApiError::invalid("the file:// URL is not a valid URL", Some(PARAM)))?;
    match parsed.host_str() {
        None | Some("") | Some("localhost") => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "file:// URLs must name a local path (file:///path or file://localhost/path)",
                Some(PARAM),
            ))
        }
    }
    let path = parsed.to_file_path().map_err(|_| denied())?;
    let root = root.canonicalize().map_err(|_| denied())?;
    let resolved = Path::new(&path).canonicalize().map_err(|_| denied())?;
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
            ..MediaPolicy::default()
        }
    }

    /// Remote fetches on, loopback 127.0.0.1 allowed (the test servers), and
    /// a resolver that knows only the names given (nothing reaches DNS).
    fn remote(names: &'static [(&'static str, IpAddr)]) -> MediaPolicy {
        MediaPolicy {
            allow_remote: true,
            allowed_hosts: vec!["127.0.0.1".into()],
            remote_timeout: Duration::from_secs(2),
            resolver: HostResolver(Arc::new(move |host, port| {
                names
                    .iter()
                    .filter(|(n, _)| *n == host)
                    .map(|(_, ip)| Ok(SocketAddr::new(*ip, port)))
                    .collect::<std::io::Result<Vec<_>>>()
            })),
            ..policy(None)
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
            (
                "/secret",
                "500 Internal Server Error",
                "",
                b"SECRET-BODY".to_vec(),
            ),
        ]);
        let url = |p: &str| format!("{base}{p}");
        let off = fetch(&url("/ok.png"), &policy(None)).unwrap_err();
        assert_eq!(off.code, Some("remote_media_disabled"));
        let on = remote(&[]);
        assert_eq!(fetch(&url("/ok.png"), &on).unwrap(), b"small");
        assert_eq!(fetch(&url("/moved"), &on).unwrap(), b"small");
        assert_eq!(
            fetch(&url("/big.png"), &on).unwrap_err().status.as_u16(),
            413
        );
        assert!(fetch(&url("/loop"), &on)
            .unwrap_err()
            .message
            .contains("redirects"));
        // Neither the status nor the body of an error answer comes back.
        for path in ["/missing", "/secret"] {
            let e = fetch(&url(path), &on).unwrap_err();
            assert!(
                e.message.contains("answered with an error"),
                "{}",
                e.message
            );
            assert!(!e.message.contains("404") && !e.message.contains("500"));
            assert!(!e.message.contains("SECRET"));
        }
        // Loopback is reachable only because the test allowed 127.0.0.1.
        let closed = MediaPolicy {
            allowed_hosts: Vec::new(),
            ..remote(&[])
        };
        let e = fetch(&url("/ok.png"), &closed).unwrap_err();
        assert_eq!(e.code, Some("remote_media_refused"), "{}", e.message);
    }

    #[test]
    fn non_public_addresses_are_refused_before_connecting() {
        // `vet` decides before any connection is made; nothing here connects.
        const NAMES: &[(&str, IpAddr)] = &[
            ("internal.test", IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
            (
                "metadata.test",
                IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
            ),
            ("mixed.test", IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34))),
            ("mixed.test", IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ("public.test", IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34))),
        ];
        // No host allowed (the other tests allow their loopback servers).
        let policy = MediaPolicy {
            allowed_hosts: Vec::new(),
            ..remote(NAMES)
        };
        let refused = [
            "http://127.0.0.2/",
            "http://127.1/",
            "http://0.0.0.0/",
            "http://0/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://192.168.1.1/",
            "http://172.16.0.1/",
            "http://100.64.0.1/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/",
            "http://[ff02::1]/",
            "http://internal.test/",
            "http://metadata.test/",
            "http://mixed.test/",
            "http://localhost/",
            "ftp://public.test/",
            "file:///etc/passwd",
        ];
        for url in refused {
            let parsed = url::Url::parse(url).unwrap();
            let e = vet(&parsed, &policy).expect_err(url);
            assert!(
                matches!(e.code, Some("remote_media_refused" | "remote_media_failed")),
                "{url}: {:?} {}",
                e.code,
                e.message
            );
        }
        let ok = vet(
            &url::Url::parse("http://public.test:8080/a.png").unwrap(),
            &policy,
        )
        .unwrap();
        assert_eq!(ok, vec!["93.184.216.34:8080".parse().unwrap()]);
        // An operator-named host is allowed whatever it resolves to.
        let named = MediaPolicy {
            allowed_hosts: vec!["internal.test".into()],
            ..policy.clone()
        };
        assert!(vet(&url::Url::parse("http://INTERNAL.test/").unwrap(), &named).is_ok());
    }

    #[test]
    fn every_redirect_hop_is_checked() {
        let base = serve(vec![
            (
                "/to-metadata",
                "302 Found",
                "Location: http://169.254.169.254/latest/meta-data/\r\n",
                Vec::new(),
            ),
            (
                "/to-file",
                "302 Found",
                "Location: file:///etc/passwd\r\n",
                Vec::new(),
            ),
            (
                "/to-loopback-name",
                "301 Moved Permanently",
                "Location: http://localhost.test/\r\n",
                Vec::new(),
            ),
            (
                "/to-v6",
                "307 Temporary Redirect",
                "Location: http://[::1]/\r\n",
                Vec::new(),
            ),
            (
                "/to-gopher",
                "302 Found",
                "Location: gopher://x/\r\n",
                Vec::new(),
            ),
        ]);
        const NAMES: &[(&str, IpAddr)] = &[("localhost.test", IpAddr::V4(Ipv4Addr::LOCALHOST))];
        let policy = remote(NAMES);
        for path in [
            "/to-metadata",
            "/to-file",
            "/to-loopback-name",
            "/to-v6",
            "/to-gopher",
        ] {
            let e = fetch(&format!("{base}{path}"), &policy).unwrap_err();
            assert_eq!(
                e.code,
                Some("remote_media_refused"),
                "{path}: {}",
                e.message
            );
        }
    }

    #[test]
    fn a_dripping_server_times_out() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n");
                for _ in 0..60 {
                    std::thread::sleep(Duration::from_millis(200));
                    if stream.write_all(b"x").is_err() {
                        break;
                    }
                }
            }
        });
        let policy = MediaPolicy {
            remote_timeout: Duration::from_secs(1),
            ..remote(&[])
        };
        let start = std::time::Instant::now();
        let e = fetch(&format!("http://{addr}/slow.png"), &policy).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(e.code, Some("remote_media_failed"), "{}", e.message);
    }

    #[test]
    fn public_and_non_public_addresses() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "2a00:1450::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "240.0.0.1",
            "::1",
            "::",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "fe80::1",
            "fc00::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
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
        std::fs::write(dir.join("in/b c.png"), b"def").unwrap();
        std::fs::write(dir.join("secret"), b"xyz").unwrap();
        let url = format!("file://{}", dir.join("in/a.png").display());
        assert!(fetch(&url, &policy(None)).is_err());
        let p = policy(Some(dir.join("in")));
        assert_eq!(fetch(&url, &p).unwrap(), b"abc");
        let escape = format!("file://{}/in/../secret", dir.display());
        assert!(fetch(&escape, &p).is_err());
        let encoded = format!("file://{}/in/%2E%2E/secret", dir.display());
        assert!(fetch(&encoded, &p).is_err());
        // Percent-encoded names and the `localhost` host.
        let spaced = format!("file://{}/in/b%20c.png", dir.display());
        assert_eq!(fetch(&spaced, &p).unwrap(), b"def");
        let localhost = format!("file://localhost{}", dir.join("in/a.png").display());
        assert_eq!(fetch(&localhost, &p).unwrap(), b"abc");
        let other_host = format!("file://example.com{}", dir.join("in/a.png").display());
        assert!(fetch(&other_host, &p).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn remote_by_default_and_unknown_schemes_are_refused() {
        let e = fetch("https://example.com/a.png", &policy(None)).unwrap_err();
        assert_eq!(e.code, Some("remote_media_disabled"));
        assert!(fetch("ftp://x/y", &policy(None)).is_err());
    }
}
