//! Caption an image (or answer a question about it) with the engine API.
//!
//! ```sh
//! cargo run --release -p blip3-engine --example caption -- \
//!     testdata/blip3-tiny/model testdata/blip3-tiny/images/v2_grid2x2_100x90.png "What is shown in this image?"
//! ```
//!
//! The answer is printed token by token as it is generated, then the stop
//! reason and the per-stage timings.

use std::io::Write;
use std::path::PathBuf;

use blip3_engine::{GenerationParams, Pipeline, PipelineOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(model), Some(image)) = (args.next(), args.next()) else {
        return Err("usage: caption MODEL_DIR IMAGE [QUESTION]".into());
    };
    let question = args.next().unwrap_or_else(|| "Describe this image.".into());

    // Loading maps the safetensors shards and checks every tensor's name and shape.
    let pipeline = Pipeline::load(&PathBuf::from(model), &PipelineOptions::default())?;
    let image = pipeline.load_image(&PathBuf::from(image))?;
    let prompt = pipeline.chat_prompt(&question, None, 1);

    // Print each new piece of the answer: decode what has been generated so
    // far and write the part not shown yet (a piece can end inside a
    // multi-byte character, shown as U+FFFD until the next id completes it).
    let tokenizer = pipeline.tokenizer();
    let mut ids = Vec::new();
    let mut shown = 0;
    let mut stdout = std::io::stdout();
    let params = GenerationParams::greedy(64);
    let output = pipeline.generate(&[image], &prompt, &params, false, &mut |choice| {
        ids.push(choice.id);
        let text = tokenizer.decode_answer(&ids);
        let end = text.strip_suffix('\u{FFFD}').unwrap_or(&text).len();
        if end > shown && text.is_char_boundary(shown) {
            let _ = write!(stdout, "{}", &text[shown..end]);
            let _ = stdout.flush();
            shown = end;
        }
    })?;
    if output.text.len() > shown && output.text.is_char_boundary(shown) {
        write!(stdout, "{}", &output.text[shown..])?;
    }
    let t = &output.timings;
    println!(
        "\n[{} ids, stop: {}; vision {:.3} s, prefill {:.3} s, decode {:.3} s]",
        output.generated_ids.len(),
        output.stop_reason.label(),
        t.vision_encode_s,
        t.prefill_s,
        t.decode_s
    );
    Ok(())
}
