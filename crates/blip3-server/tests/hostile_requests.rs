//! The stable counterpart of the `chat_request` cargo-fuzz target: the
//! committed corpus and deterministic mutations of it through both
//! endpoints' parsers. Every body is either a request or a 4xx error.

use std::path::PathBuf;

use blip3_engine::Family;
use blip3_server::api::{parse_chat, parse_completion, ChatImages};

#[test]
fn request_bodies_parse_or_fail_cleanly() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/chat_request");
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty());
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound.max(1) as u64) as usize
    };
    // Every entry once; 300 mutations of each of up to 24 entries spread
    // over the corpus (bounded time however large the corpus grows).
    let every = seeds.len().div_ceil(24).max(1);
    for (index, path) in seeds.iter().enumerate() {
        let seed = std::fs::read(path).unwrap();
        let rounds = if index % every == 0 { 300 } else { 1 };
        for round in 0..rounds {
            let mut body = seed.clone();
            if round > 0 {
                for _ in 0..1 + next(3) {
                    let i = next(body.len() + 1);
                    match next(4) {
                        0 if i < body.len() => body[i] ^= 1 << next(8),
                        1 => body.truncate(i),
                        2 => body.insert(i, b"{}[]\",:0-9e<>|"[next(14)]),
                        _ => {
                            let piece = body[i..(i + next(16)).min(body.len())].to_vec();
                            body.splice(i..i, piece);
                        }
                    }
                }
            }
            for family in [Family::Blip3R1, Family::XgenmmV15] {
                if let Err(e) = parse_chat(&body, ChatImages::of(family)) {
                    assert!(e.status.is_client_error(), "{e}");
                }
            }
            if let Err(e) = parse_completion(&body) {
                assert!(e.status.is_client_error(), "{e}");
            }
        }
    }
}
