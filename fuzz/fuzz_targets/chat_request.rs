//! Request bodies of both endpoints through the OpenAI-format parser.
#![no_main]

use blip3_server::api::{parse_chat, parse_completion, ChatImages};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for family in [blip3_model::Family::Blip3R1, blip3_model::Family::XgenmmV15] {
        let _ = parse_chat(data, ChatImages::of(family));
    }
    let _ = parse_completion(data);
});
