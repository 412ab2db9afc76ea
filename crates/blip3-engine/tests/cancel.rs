//! `Pipeline::generate_with`: its callback stops a run within one token (the
//! Python binding's Ctrl-C), and with a template-only prompt it is `generate`;
//! `Pipeline::image_tokens` are the rows the run splices.

use std::ops::ControlFlow;
use std::path::PathBuf;

use blip3_engine::{
    EngineError, GenerationParams, MarkedText, Pipeline, PipelineOptions, TextKind,
};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/blip3-tiny")
}

#[test]
fn the_callback_stops_the_run_and_template_prompts_equal_generate() {
    let p = Pipeline::load(&fixture().join("model"), &PipelineOptions::default()).unwrap();
    let image = p
        .load_image(&fixture().join("images/v2_grid2x2_100x90.png"))
        .unwrap();
    let images = [image];
    let prompt = p.chat_prompt("What is shown in this image?", None, 1);
    let mut params = GenerationParams::greedy(20);
    params.ignore_eos = true;

    let mut seen = 0;
    let stopped = p.generate_with(
        &images,
        &MarkedText::of(TextKind::Template, &prompt),
        &params,
        false,
        &mut |_| {
            seen += 1;
            if seen == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    assert!(matches!(stopped, Err(EngineError::Cancelled)));
    assert_eq!(seen, 3, "no token after the break");

    let plain = p
        .generate(&images, &prompt, &params, true, &mut |_| {})
        .unwrap();
    let marked = p
        .generate_with(
            &images,
            &MarkedText::of(TextKind::Template, &prompt),
            &params,
            false,
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap();
    assert_eq!(marked.generated_ids, plain.generated_ids);
    assert_eq!(plain.generated_ids.len(), 20);

    let ids = p.tokenizer().encode(&prompt, true);
    let encoded = p.encode_image(&p.preprocess(&images[0])).unwrap();
    let tokens = p.image_tokens(&ids, &[encoded]).unwrap();
    let stages = plain.stages.unwrap();
    assert_eq!(tokens.len(), 1);
    let a: Vec<f32> = tokens[0].flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = stages
        .vision_tokens
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a, b);
}
