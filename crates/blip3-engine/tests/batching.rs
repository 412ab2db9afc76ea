//! The batched decode step (`Pipeline::step` over several sequences) gives
//! each sequence exactly the tokens it gets alone: sequences of different
//! lengths, images and positions share one decoder pass per step.

use std::path::PathBuf;

use blip3_engine::prompt::instruct_prompt;
use blip3_engine::{GenerationParams, Pipeline, PipelineOptions, SamplingParams, Sequence};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/blip3-tiny")
}

fn start(p: &Pipeline, image: &str, question: &str, params: &GenerationParams) -> Sequence {
    let img = p.load_image(&fixture().join("images").join(image)).unwrap();
    let prepared = p.preprocess(&img);
    let encoded = p.encode_image(&prepared).unwrap();
    let ids = p.tokenizer().encode(&instruct_prompt(question, None), true);
    let embeds = p
        .prompt_embeds(&ids, std::slice::from_ref(&encoded))
        .unwrap();
    p.start(&embeds, &ids, params).unwrap()
}

fn alone(p: &Pipeline, image: &str, question: &str, params: &GenerationParams) -> Vec<u32> {
    let mut seq = start(p, image, question, params);
    while seq.finished.is_none() {
        p.choose(&mut seq).unwrap();
        p.step(&mut [&mut seq]).unwrap();
    }
    seq.generated
}

#[test]
fn batched_steps_match_single_sequences() {
    let p = Pipeline::load(&fixture().join("model"), &PipelineOptions::default()).unwrap();
    let cases = [
        ("v1_small_30x20.png", "What is shown in this image?"),
        (
            "v2_grid2x2_100x90.png",
            "Describe the picture in detail, please.",
        ),
        ("v3_grid2x1_128x64.png", "Colors?"),
        ("v4_grid3x1_200x60.png", "What is shown in this image?"),
        ("v2_grid2x2_100x90.png", "What is shown in this image?"),
    ];
    for params in [
        GenerationParams::greedy(10),
        GenerationParams {
            max_new_tokens: 10,
            sampling: SamplingParams {
                temperature: 0.9,
                top_k: 50,
                top_p: 0.95,
                repetition_penalty: 1.1,
                seed: 42,
            },
            top_logprobs: 0,
            completion: false,
            ignore_eos: false,
        },
    ] {
        let expected: Vec<Vec<u32>> = cases
            .iter()
            .map(|(i, q)| alone(&p, i, q, &params))
            .collect();
        // Five sequences (more than one kernel batch of four), started at
        // different times so their positions differ.
        let mut seqs: Vec<Sequence> = Vec::new();
        let mut next = 0;
        while seqs.iter().any(|s| s.finished.is_none()) || next < cases.len() {
            if next < cases.len() {
                let (i, q) = cases[next];
                seqs.push(start(&p, i, q, &params));
                next += 1;
            }
            for s in seqs
                .iter_mut()
                .filter(|s| s.finished.is_none() && !s.needs_step())
            {
                p.choose(s).unwrap();
            }
            let mut refs: Vec<&mut Sequence> = seqs.iter_mut().collect();
            p.step(&mut refs).unwrap();
        }
        for (k, s) in seqs.iter().enumerate() {
            assert_eq!(s.generated, expected[k], "case {k}, {params:?}");
        }
    }
}
