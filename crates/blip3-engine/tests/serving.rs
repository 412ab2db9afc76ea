//! The serving engine: requests submitted as marked text and image bytes
//! come back as the pipeline's own greedy answers; a new image request is
//! admitted crop by crop and chunk by chunk between the decoder passes of a
//! running stream (which used to freeze for the whole admission); chunked
//! prefill and per-crop encoding give the unchunked results; cancel stops
//! a request.

use std::path::PathBuf;

use blip3_engine::prompt::instruct_prompt;
use blip3_engine::serving::{Engine, EngineConfig, EngineRequest, Event, ImageInput, TokenBudget};
use blip3_engine::{MarkedText, Pipeline, PipelineOptions, SamplingParams, TextKind};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/blip3-tiny")
}

const IMAGE: &str = "images/v2_grid2x2_100x90.png";

fn pipeline() -> Pipeline {
    Pipeline::load(&fixture().join("model"), &PipelineOptions::default()).unwrap()
}

fn request(
    prompt: &str,
    images: Vec<ImageInput>,
    max_tokens: usize,
    ignore_eos: bool,
) -> EngineRequest {
    EngineRequest {
        prompt: MarkedText::of(TextKind::Template, prompt),
        images,
        max_tokens: TokenBudget::Exactly(max_tokens),
        sampling: SamplingParams::default(),
        seeded: true,
        n: 1,
        stop: Vec::new(),
        logprobs: false,
        top_logprobs: 0,
        completion: false,
        ignore_eos,
        param: "messages",
    }
}

/// The chat prompt for a question about no image.
fn text_prompt(question: &str) -> String {
    blip3_engine::prompt::chat_prompt(question, None, "<image>\n", 0)
}

fn image() -> ImageInput {
    ImageInput {
        bytes: std::fs::read(fixture().join(IMAGE)).unwrap(),
        global_view_only: false,
        at: "messages[0].content[0]".into(),
    }
}

/// Token ids and passes until `Done`, and the request's timings.
fn drain(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> (Vec<u32>, Vec<u64>, blip3_engine::serving::Timings) {
    let (mut ids, mut passes) = (Vec::new(), Vec::new());
    while let Some(event) = events.blocking_recv() {
        match event {
            Event::Token { id, pass, .. } => {
                ids.push(id);
                passes.push(pass);
            }
            Event::Done { timings, .. } => return (ids, passes, timings),
            Event::Error(e) => panic!("request failed: {e}"),
            Event::Finish { .. } => {}
        }
    }
    panic!("the engine stopped before Done");
}

#[test]
fn crops_and_prefill_chunks_give_the_whole_results() {
    let p = pipeline();
    let img = p.load_image(&fixture().join(IMAGE)).unwrap();
    let prepared = p.preprocess(&img);
    assert!(prepared.num_crops > 1);
    let whole = p.encode_image(&prepared).unwrap();
    let crops: Vec<_> = (0..prepared.num_crops)
        .map(|c| p.encode_crop(&prepared, c).unwrap())
        .collect();
    let pieced = p.finish_image(&prepared, &crops).unwrap();
    let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(flat(&whole.features), flat(&pieced.features));
    assert_eq!(whole.padding_mask, pieced.padding_mask);

    let ids = p
        .tokenizer()
        .encode(&instruct_prompt("What is shown in this image?", None), true);
    let embeds = p.prompt_embeds(&ids, &[whole]).unwrap();
    let params = blip3_engine::GenerationParams::greedy(6);
    let full = p.start(&embeds, &ids, &params).unwrap();
    let mut chunked = p.begin_prefill(&embeds, &ids, &params).unwrap();
    let mut chunks = 0;
    while !p.prefill_chunk(&mut chunked, 7).unwrap() {
        chunks += 1;
    }
    assert!(chunks > 2);
    let chunked = p.finish_prefill(chunked).unwrap();
    let (a, b) = (full.logits(), chunked.logits());
    let peak = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(worst <= 1e-5 * peak.max(1.0), "{worst} of {peak}");
}

#[test]
fn a_running_stream_keeps_going_while_an_image_request_is_admitted() {
    let reference = pipeline();
    let img = reference.load_image(&fixture().join(IMAGE)).unwrap();
    let crops = reference.preprocess(&img).num_crops;
    let question = "What is shown in this image?";
    let expected = reference
        .run(
            std::slice::from_ref(&img),
            &instruct_prompt(question, None),
            8,
            false,
            &mut |_| {},
        )
        .unwrap();

    let engine = Engine::start(
        pipeline(),
        EngineConfig {
            prefill_chunk: 16,
            ..EngineConfig::default()
        },
    )
    .unwrap();
    // A long text-only stream first (ignore_eos: it cannot end early)...
    let mut running = engine
        .submit(request(
            &text_prompt("Tell a story."),
            Vec::new(),
            400,
            true,
        ))
        .unwrap();
    match running.events.blocking_recv() {
        Some(Event::Token { .. }) => {}
        other => panic!("expected a first token, got {other:?}"),
    }
    // ...then an image request, admitted while the stream runs.
    let mut admitted = engine
        .submit(request(
            &instruct_prompt(question, None),
            vec![image()],
            8,
            false,
        ))
        .unwrap();
    let (ids, _, timings) = drain(&mut admitted.events);
    assert_eq!(
        ids, expected.generated_ids,
        "same answer as the pipeline alone"
    );
    // One decoder pass of the stream after each crop, the perceiver and
    // each prefill chunk; the old scheduler ran none (a frozen stream).
    assert!(
        timings.admission_passes as usize > crops,
        "{} passes during an admission of {crops} crops",
        timings.admission_passes
    );
    // The stream's passes are consecutive: it never skipped one.
    let (rest, passes, _) = drain(&mut running.events);
    assert_eq!(rest.len(), 399);
    assert!(passes.windows(2).all(|w| w[1] == w[0] + 1), "{passes:?}");
    engine.stop();
}

#[test]
fn cancel_stops_a_request_and_errors_name_the_problem() {
    let engine = Engine::start(pipeline(), EngineConfig::default()).unwrap();
    let prompt = text_prompt("Tell a story.");
    let mut stream = engine
        .submit(request(&prompt, Vec::new(), 400, true))
        .unwrap();
    assert!(matches!(
        stream.events.blocking_recv(),
        Some(Event::Token { .. })
    ));
    stream.cancel();
    // The next request is served normally.
    let mut next = engine
        .submit(request(&prompt, Vec::new(), 3, true))
        .unwrap();
    let (ids, _, _) = drain(&mut next.events);
    assert_eq!(ids.len(), 3);
    assert!(
        engine
            .metrics()
            .cancelled
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );

    // Refusals before any work: too many image slots, a bad image, a
    // prompt longer than the context.
    let two_slots = instruct_prompt("Q?", None).replace("<image>", "<image><image>");
    let e = engine
        .submit(request(&two_slots, vec![image()], 3, false))
        .unwrap_err();
    assert_eq!(e.code, Some("image_count_mismatch"), "{e}");
    let bad = ImageInput {
        bytes: b"SECRETBYTES and more".to_vec(),
        ..image()
    };
    let e = engine
        .submit(request(&instruct_prompt("Q?", None), vec![bad], 3, false))
        .unwrap_err();
    assert_eq!(e.code, Some("invalid_image"), "{e}");
    assert!(!e.message.contains("SECRET"), "{e}");
    let long = "word ".repeat(1 << 20);
    let e = engine
        .submit(request(&long, Vec::new(), 3, false))
        .unwrap_err();
    assert_eq!(e.code, Some("context_length_exceeded"), "{e}");
    engine.stop();
}
