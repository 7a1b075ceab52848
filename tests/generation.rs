//! Generation as apps use it, on the tiny Llama fixture: end-of-sequence ids read from
//! `generation_config.json` (else `config.json`) end the stream, the stop id included;
//! the stream yields the tokens `generate_with` returns; text streams in whole characters
//! and ends before a stop string (also in an app's loop over the stream); the chat template renders as transformers'
//! `apply_chat_template` did (tests/fixtures/models/tiny-llama/chat_reference.json).

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;
use wgpu_tp::load::{Checkpoint, Tokenizer};
use wgpu_tp::model::{Sampling, TextStream, Transformer};
use wgpu_tp::Error;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// A scratch folder of this process holding `files` (name, text).
fn scratch(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-tp-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

fn tokenizer() -> Tokenizer {
    Tokenizer::beside(fixture("tiny-llama")).unwrap().unwrap()
}

#[test]
fn eos_ids_come_from_generation_config_else_config() {
    // The fixture's generation_config.json says [2, 126]; its config.json says 2.
    assert_eq!(tokenizer().eos_ids(), &[2, 126]);
    let config = std::fs::read_to_string(fixture("tiny-llama/config.json")).unwrap();
    let only_config = scratch("eos-config", &[("config.json", &config)]);
    assert_eq!(Tokenizer::eos_token_ids(&only_config).unwrap(), vec![2]);
    let int = scratch(
        "eos-int",
        &[
            ("config.json", &config),
            ("generation_config.json", r#"{"eos_token_id": 7}"#),
        ],
    );
    assert_eq!(Tokenizer::eos_token_ids(&int).unwrap(), vec![7]);
    // null in generation_config.json: config.json decides.
    let null = scratch(
        "eos-null",
        &[
            ("config.json", &config),
            ("generation_config.json", r#"{"eos_token_id": null}"#),
        ],
    );
    assert_eq!(Tokenizer::eos_token_ids(&null).unwrap(), vec![2]);
    let none = scratch("eos-none", &[("config.json", "{}")]);
    assert!(Tokenizer::eos_token_ids(&none).unwrap().is_empty());
    let bad = scratch(
        "eos-bad",
        &[("generation_config.json", r#"{"eos_token_id": "two"}"#)],
    );
    assert!(matches!(
        Tokenizer::eos_token_ids(&bad),
        Err(Error::Checkpoint { .. })
    ));
}

#[test]
fn stop_ids_end_the_stream_and_are_included() {
    let Some(group) = common::group(2) else {
        return;
    };
    let checkpoint = Checkpoint::open(fixture("tiny-llama")).unwrap();
    let model = Transformer::from_checkpoint(&group, &checkpoint).unwrap();
    let reference = json(&fixture("tiny-llama/reference.json"));
    let prompt = ids(&reference["prompt_ids"]);
    let greedy = ids(&reference["greedy_ids"]);
    // Without stop ids: 20 tokens, the first 16 transformers' greedy ones.
    let all = model
        .generate_with(&prompt, 20, Sampling::default(), &[])
        .unwrap();
    assert_eq!(all.len(), 20);
    assert_eq!(all[..16], greedy);
    // With the fixture's [2, 126]: 126 is the 16th greedy token (and not before), and
    // the last one given.
    let eos = tokenizer().eos_ids().to_vec();
    let stopped = model
        .generate_with(&prompt, 20, Sampling::default(), &eos)
        .unwrap();
    assert_eq!(
        stopped, greedy,
        "stops after the first stop id, including it"
    );
    assert_eq!(stopped[15], 126);
    let mut stream = model
        .stream(&prompt, 20, Sampling::default())
        .unwrap()
        .stop_ids(&eos);
    assert_eq!(stream.by_ref().count(), 16);
    assert!(stream.next().is_none(), "nothing after the stop id");
    assert_eq!(stream.produced(), 16);
    // An early stop id ends it there: 76, the 4th.
    let early = model
        .generate_with(&prompt, 20, Sampling::default(), &[76])
        .unwrap();
    assert_eq!(early, greedy[..4]);
}

#[test]
fn an_app_loop_stops_at_a_stop_string_in_the_generated_text() {
    let Some(group) = common::group(2) else {
        return;
    };
    let checkpoint = Checkpoint::open(fixture("tiny-llama")).unwrap();
    let model = Transformer::from_checkpoint(&group, &checkpoint).unwrap();
    let tok = tokenizer();
    let prompt = tok.encode("t1 t17 t42 t99 t3 t64 t5").unwrap();
    // The greedy text is "t70 t93 t15 t76 t70 t8 ...": stop at "t15 t76".
    let mut text = TextStream::new(&tok).stop_strings(&["t15 t76"]);
    let mut shown = String::new();
    let mut tokens = Vec::new();
    for t in model
        .stream(&prompt, 16, Sampling::default())
        .unwrap()
        .stop_ids(tok.eos_ids())
    {
        tokens.push(t.unwrap());
        shown.push_str(&text.push(tokens[tokens.len() - 1]).unwrap());
        if text.is_stopped() {
            break;
        }
    }
    shown.push_str(&text.finish().unwrap());
    assert_eq!(
        tokens,
        [70, 93, 15, 76],
        "no token past the stop string's last"
    );
    assert_eq!(shown, "t70 t93 ");
}

#[test]
fn the_stream_yields_what_generate_with_returns() {
    let Some(group) = common::group(3) else {
        return;
    };
    let checkpoint = Checkpoint::open(fixture("tiny-llama")).unwrap();
    let model = Transformer::from_checkpoint(&group, &checkpoint).unwrap();
    let prompt = [1, 17, 42];
    let s = Sampling::default()
        .temperature(1.2)
        .top_k(30)
        .top_p(0.9)
        .repetition_penalty(1.1)
        .seed(42);
    let whole = model.generate_with(&prompt, 20, s, &[]).unwrap();
    assert_eq!(whole.len(), 20);
    let mut streamed = Vec::new();
    for t in model.stream(&prompt, 20, s).unwrap() {
        streamed.push(t.unwrap());
    }
    assert_eq!(streamed, whole);
    // An app that stops after 5 (drops the stream) got the same first 5.
    let first: Vec<u32> = model
        .stream(&prompt, 20, s)
        .unwrap()
        .take(5)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, whole[..5]);
    // Another seed, other tokens (the seed is used).
    let other = model.generate_with(&prompt, 20, s.seed(43), &[]).unwrap();
    assert_ne!(other, whole);
}

#[test]
fn text_streams_up_to_a_stop_string() {
    let tok = tokenizer();
    // The word-level tokenizer decodes "t<i>" words joined by spaces.
    let tokens = [70, 93, 15, 76, 70, 8];
    let full = tok.decode(&tokens).unwrap();
    assert_eq!(full, "t70 t93 t15 t76 t70 t8");
    // Without stop strings: the pieces make the whole text.
    let mut s = TextStream::new(&tok);
    let mut pieces: Vec<String> = tokens.iter().map(|&t| s.push(t).unwrap()).collect();
    pieces.push(s.finish().unwrap());
    assert_eq!(pieces.concat(), full);
    assert!(!s.is_stopped());
    // A stop string spanning two tokens: the text before it, nothing after.
    let mut s = TextStream::new(&tok).stop_strings(&["t15 t76"]);
    let mut given = String::new();
    let mut stopped_at = None;
    for (i, &t) in tokens.iter().enumerate() {
        given.push_str(&s.push(t).unwrap());
        if s.is_stopped() && stopped_at.is_none() {
            stopped_at = Some(i);
        }
    }
    given.push_str(&s.finish().unwrap());
    assert_eq!(stopped_at, Some(3));
    assert_eq!(given, "t70 t93 ");
    assert_eq!(s.text(), given);
    // Text that may start a stop string waits: after "t70 t93 t15" with the stop string
    // "t15 t99", "t15" is held back until "t76" shows it is not the stop string (the
    // space before it, which starts no stop string, is given).
    let mut s = TextStream::new(&tok).stop_strings(&["t15 t99"]);
    assert_eq!(s.push(70).unwrap(), "t70");
    assert_eq!(s.push(93).unwrap(), " t93");
    assert_eq!(s.push(15).unwrap(), " ");
    assert_eq!(s.push(76).unwrap(), "t15 t76");
    assert_eq!(s.finish().unwrap(), "");
    assert_eq!(s.text(), "t70 t93 t15 t76");
}

#[test]
fn text_never_streams_half_a_character() {
    // A byte-fallback BPE: "€" is the three byte tokens E2 82 AC.
    let tokenizer = r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": true, "ignore_merges": false,
            "vocab": {"<0xE2>": 0, "<0x82>": 1, "<0xAC>": 2, "a": 3, "b": 4}, "merges": []}}"#;
    let dir = scratch("bytes", &[("tokenizer.json", tokenizer)]);
    let tok = Tokenizer::beside(&dir).unwrap().unwrap();
    assert_eq!(tok.decode(&[3, 0, 1, 2, 4]).unwrap(), "a€b");
    let mut s = TextStream::new(&tok);
    let pieces: Vec<String> = [3, 0, 1, 2, 4]
        .iter()
        .map(|&t| s.push(t).unwrap())
        .collect();
    assert_eq!(pieces, ["a", "", "", "€", "b"]);
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')));
    // Cut off mid-character: finish gives what the tokenizer makes of the bytes.
    let mut s = TextStream::new(&tok);
    assert_eq!(s.push(0).unwrap(), "");
    assert_eq!(s.finish().unwrap(), "\u{FFFD}");
}

#[test]
fn the_chat_template_renders_as_transformers() {
    let tok = tokenizer();
    let reference = json(&fixture("tiny-llama/chat_reference.json"));
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let messages: Vec<(&str, &str)> = case["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        let add = case["add_generation_prompt"].as_bool().unwrap();
        let text = tok.apply_chat_template(&messages, add).unwrap();
        assert_eq!(text, case["text"].as_str().unwrap(), "{messages:?}");
        assert_eq!(tok.encode_chat(&messages, add).unwrap(), ids(&case["ids"]));
    }
}

#[test]
fn chat_templates_have_python_methods_raise_exception_and_special_tokens() {
    let tokenizer = std::fs::read_to_string(fixture("tiny-llama/tokenizer.json")).unwrap();
    let with = |name: &str, template: &str| {
        let config = serde_json::json!({
            "bos_token": {"content": "t1"}, "eos_token": "t2", "chat_template": template,
        })
        .to_string();
        let dir = scratch(
            name,
            &[
                ("tokenizer.json", &tokenizer),
                ("tokenizer_config.json", &config),
            ],
        );
        Tokenizer::beside(&dir).unwrap().unwrap()
    };
    let t = with(
        "chat-methods",
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}\
         {{ raise_exception('no system role') }}{% endif %}\
         {{ m['content'].strip().upper() }}{{ eos_token }}{% endfor %}",
    );
    assert_eq!(
        t.apply_chat_template(&[("user", "  hi ")], false).unwrap(),
        "t1HIt2"
    );
    match t.apply_chat_template(&[("system", "x")], false) {
        Err(Error::Checkpoint { message, .. }) => {
            assert!(message.contains("no system role"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // No chat template: refused.
    let none = scratch("chat-none", &[("tokenizer.json", &tokenizer)]);
    let t = Tokenizer::beside(&none).unwrap().unwrap();
    assert!(matches!(
        t.apply_chat_template(&[("user", "x")], true),
        Err(Error::InvalidArgument { .. })
    ));
}
