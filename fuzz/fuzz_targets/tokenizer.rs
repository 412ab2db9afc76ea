//! Text from a request through the Phi-3 tokenizer, as template, plain and
//! raw text, and the ids back through the decoder.
#![no_main]

use blip3_tokenizer::{MarkedText, TextKind, Tokenizer};
use libfuzzer_sys::fuzz_target;

fn tokenizer() -> &'static Tokenizer {
    static T: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/phi3-tokenizer");
        Tokenizer::from_dir(&dir).expect("fixture tokenizer")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let t = tokenizer();
    let mut marked = MarkedText::new();
    marked.template("<|user|>\n");
    marked.plain(text);
    marked.template("<|end|>\n");
    marked.push(TextKind::Raw, text);
    // The server's length bound: in plain text (no added token recognised,
    // so no whitespace stripped next to one) every byte is covered by ids.
    let plain = t.encode_marked(&MarkedText::of(TextKind::Plain, text), false);
    assert!(plain.len() * t.max_token_bytes() >= text.len());
    for ids in [t.encode(text, true), t.encode_marked(&marked, false), plain] {
        let _ = t.decode(&ids, false);
        let _ = t.decode_answer(&ids);
    }
});
