//! Sampling on shards (`model::Sampling`): the tokens each rank's candidates lead to are
//! exactly the ones a host reference picks by applying the documented chain (repetition
//! penalty, temperature, top-k, top-p, min-p, SplitMix64 draw) to the full logits
//! (`Transformer::logits`), at tp 1, 2, 3 and 4 on both kinds of group; with a seed and
//! `Numerics::TpInvariant` the same tokens at tp 1, 2 and 4 (devices and logical ranks
//! sharing one device); bad options and chains the
//! candidates cannot decide are refused; the random stream is SplitMix64's.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use wgpu_tp::load::Checkpoint;
use wgpu_tp::model::{Sampler, Sampling, SplitMix64, Transformer};
use wgpu_tp::reference::{write_synthetic_llama, SyntheticLlama};
use wgpu_tp::{Error, Numerics};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

/// The options the reference needs, in plain numbers (the test's own copy: the library's
/// fields are private).
#[derive(Debug, Clone, Copy)]
struct Opts {
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    penalty: f32,
    seed: u64,
}

impl Opts {
    fn sampling(&self) -> Sampling {
        Sampling::default()
            .temperature(self.temperature)
            .top_k(self.top_k)
            .top_p(self.top_p)
            .min_p(self.min_p)
            .repetition_penalty(self.penalty)
            .seed(self.seed)
    }
}

/// SplitMix64 written out again from the documentation (not the library's).
struct Stream(u64);

impl Stream {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The documented chain on a full row of logits.
fn reference_pick(row: &[f32], seen: &HashSet<u32>, o: &Opts, rng: &mut Stream) -> u32 {
    let x: Vec<f32> = row
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let v = if seen.contains(&(i as u32)) {
                if v < 0.0 {
                    v * o.penalty
                } else {
                    v / o.penalty
                }
            } else {
                v
            };
            if o.temperature > 0.0 {
                v / o.temperature
            } else {
                v
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[b].partial_cmp(&x[a]).unwrap().then(a.cmp(&b)));
    if o.temperature == 0.0 {
        return order[0] as u32;
    }
    let max = f64::from(x[order[0]]);
    let mut kept: Vec<(usize, f64)> = order
        .iter()
        .map(|&i| (i, (f64::from(x[i]) - max).exp()))
        .collect();
    if o.top_k > 0 {
        kept.truncate(o.top_k);
    }
    let mut n = kept.len();
    if o.top_p < 1.0 {
        let z: f64 = kept.iter().map(|k| k.1).sum();
        let mut cum = 0.0;
        for (i, k) in kept.iter().enumerate() {
            cum += k.1;
            if cum >= f64::from(o.top_p) * z {
                n = i + 1;
                break;
            }
        }
    }
    let n_min = kept
        .iter()
        .take_while(|k| k.1 >= f64::from(o.min_p))
        .count();
    kept.truncate(n.min(n_min).max(1));
    let total: f64 = kept.iter().map(|k| k.1).sum();
    let target = rng.next_f64() * total;
    let mut cum = 0.0;
    for k in &kept {
        cum += k.1;
        if target < cum {
            return k.0 as u32;
        }
    }
    kept.last().unwrap().0 as u32
}

/// The reference's tokens after `prompt` (one token, so that every forward here and in
/// the stream is a 1-row forward: the same kernels, the same logits bits).
fn reference_tokens(model: &Transformer, prompt: u32, n: usize, o: &Opts) -> Vec<u32> {
    let mut cache = model.new_cache(n + 1).unwrap();
    let mut rng = Stream(o.seed);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut feed = prompt;
    for _ in 0..n {
        seen.insert(feed);
        let row = model.logits(&[feed], &mut cache).unwrap();
        feed = reference_pick(&row, &seen, o, &mut rng);
        out.push(feed);
    }
    out
}

/// Configurations touching every filter, alone and together.
fn configs() -> Vec<Opts> {
    let base = Opts {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        penalty: 1.0,
        seed: 0,
    };
    vec![
        // Temperature alone (the 128 tokens are all candidates).
        Opts {
            temperature: 1.5,
            seed: 1,
            ..base
        },
        Opts {
            temperature: 0.8,
            top_k: 20,
            seed: 2,
            ..base
        },
        Opts {
            temperature: 1.2,
            top_p: 0.7,
            seed: 3,
            ..base
        },
        Opts {
            temperature: 0.9,
            min_p: 0.1,
            penalty: 1.3,
            seed: 4,
            ..base
        },
        Opts {
            temperature: 1.1,
            top_k: 40,
            top_p: 0.85,
            min_p: 0.02,
            penalty: 1.2,
            seed: 5,
        },
        // Greedy after a repetition penalty (the candidates' path, no random number).
        Opts {
            temperature: 0.0,
            penalty: 2.0,
            ..base
        },
    ]
}

#[test]
fn sampled_tokens_match_the_host_reference_at_tp_1_to_4() {
    let checkpoint = Checkpoint::open(fixture("tiny-llama")).unwrap();
    let n = 12;
    for tp in [1, 2, 3, 4] {
        for group in common::groups(tp) {
            let model = Transformer::from_checkpoint(&group, &checkpoint).unwrap();
            let greedy = model.generate(&[1], n).unwrap();
            for o in configs() {
                let ctx = format!("tp {tp} ({} ranks), {o:?}", group.ranks().len());
                let want = reference_tokens(&model, 1, n, &o);
                let got: Vec<u32> = model
                    .stream(&[1], n, o.sampling())
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                assert_eq!(got, want, "{ctx}");
                // The sampled ones must differ from greedy, or the test could not tell.
                if o.temperature > 0.0 {
                    assert_ne!(got, greedy, "{ctx}: no different from greedy");
                }
            }
            // Few candidates: top-p on the 8 best per rank and sums for the rest (the
            // tails path); top_p 0.5 at temperature 0.2 keeps fewer than 8 here, so the
            // cut is decided within the known tokens. The reference's Z is summed in
            // another order: the cut could differ only if the running sum came within
            // about 1e-15 (relative) of 0.5 Z, which these 12 steps do not.
            let o = Opts {
                temperature: 0.2,
                top_k: 0,
                top_p: 0.5,
                min_p: 0.0,
                penalty: 1.0,
                seed: 9,
            };
            let got: Vec<u32> = model
                .stream(&[1], n, o.sampling().candidates(8))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(got, reference_tokens(&model, 1, n, &o), "tp {tp}: tails");
        }
    }
}

#[test]
fn temperature_zero_is_greedy() {
    let Some(group) = common::group(2) else {
        return;
    };
    let model =
        Transformer::from_checkpoint(&group, &Checkpoint::open(fixture("tiny-llama")).unwrap())
            .unwrap();
    let prompt = [1, 17, 42, 99];
    let got = model
        .generate_with(&prompt, 10, Sampling::default().top_k(3).seed(5), &[])
        .unwrap();
    assert_eq!(got, model.generate(&prompt, 10).unwrap());
}

#[test]
fn seeded_sampling_gives_the_same_tokens_at_tp_1_2_and_4_under_tp_invariant_numerics() {
    // The synthetic model of tests/model.rs, whose logits keep their bits at every tp.
    let m = SyntheticLlama {
        vocab: 96,
        hidden: 64,
        intermediate: 128,
        layers: 2,
        heads: 8,
        kv_heads: 4,
        positions: 32,
    };
    let dir = std::env::temp_dir().join(format!("wgpu-tp-{}-sampling", std::process::id()));
    write_synthetic_llama(&dir, &m, 11).unwrap();
    let checkpoint = Checkpoint::open(&dir).unwrap();
    let prompt = [3u32, 14, 15, 92, 65, 35];
    let samplings = [
        Sampling::default().temperature(1.3).seed(1),
        Sampling::default().temperature(0.9).top_p(0.8).seed(2),
        Sampling::default()
            .temperature(1.0)
            .top_k(10)
            .min_p(0.05)
            .repetition_penalty(1.4)
            .seed(3),
    ];
    let mut first: Option<Vec<Vec<u32>>> = None;
    for (tp, shared) in [(1, false), (2, false), (2, true), (4, false), (4, true)] {
        let Some(group) = common::cached_group(tp, shared, Numerics::TpInvariant) else {
            return;
        };
        let model = Transformer::from_checkpoint(&group, &checkpoint).unwrap();
        let greedy = model.generate(&prompt, 16).unwrap();
        let got: Vec<Vec<u32>> = samplings
            .iter()
            .map(|s| model.generate_with(&prompt, 16, *s, &[]).unwrap())
            .collect();
        for g in &got {
            assert_ne!(g, &greedy, "tp {tp}: sampling no different from greedy");
        }
        match &first {
            None => first = Some(got),
            Some(want) => assert_eq!(&got, want, "tp {tp}, shared {shared}"),
        }
    }
}

#[test]
fn bad_options_are_refused() {
    let bad = [
        Sampling::default().temperature(-0.1),
        Sampling::default().temperature(f32::NAN),
        Sampling::default().temperature(f32::INFINITY),
        Sampling::default().top_p(0.0),
        Sampling::default().top_p(1.01),
        Sampling::default().top_p(f32::NAN),
        Sampling::default().min_p(-0.1),
        Sampling::default().min_p(1.5),
        Sampling::default().repetition_penalty(0.0),
        Sampling::default().repetition_penalty(f32::NAN),
        Sampling::default().candidates(0),
    ];
    for s in bad {
        assert!(
            matches!(Sampler::new(s), Err(Error::InvalidArgument { .. })),
            "{s:?}"
        );
    }
    assert!(Sampler::new(Sampling::default().temperature(0.7).top_p(1.0).min_p(1.0)).is_ok());
    let Some(group) = common::group(2) else {
        return;
    };
    let model =
        Transformer::from_checkpoint(&group, &Checkpoint::open(fixture("tiny-llama")).unwrap())
            .unwrap();
    assert!(matches!(
        model.stream(&[1], 4, Sampling::default().temperature(-1.0)),
        Err(Error::InvalidArgument { .. })
    ));
    // Temperature alone keeps every token: with 4 candidates per rank of 64 it cannot be
    // decided, and is refused rather than drawn from a truncated distribution.
    let s = Sampling::default().temperature(1.0).candidates(4);
    let first = model.stream(&[1], 4, s).unwrap().next().unwrap();
    assert!(
        matches!(first, Err(Error::InvalidArgument { .. })),
        "{first:?}"
    );
    // The same with top-k is exact, whatever the candidates.
    let s = s.top_k(30);
    assert!(model.stream(&[1], 4, s).unwrap().all(|t| t.is_ok()));
}

#[test]
fn the_random_stream_is_splitmix64() {
    // SplitMix64's published first outputs for seed 0 (e.g. the test vectors of the
    // reference implementation by Vigna).
    let mut r = SplitMix64::new(0);
    assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
    let mut r = SplitMix64::new(0);
    assert_eq!(
        r.next_f64(),
        (0xE220_A839_7B1D_CDAFu64 >> 11) as f64 / 2f64.powi(53)
    );
}

#[test]
fn the_head_proposes_k_per_rank_and_sums_the_rest() {
    use wgpu_tp::nn::ParallelLmHead;
    use wgpu_tp::reference::Rng;
    use wgpu_tp::DistTensor;
    let (vocab, hidden) = (50, 16);
    let mut rng = Rng::new(3);
    let w = rng.normal(vocab * hidden);
    let x = rng.normal(2 * hidden);
    for tp in [1, 2, 3, 4] {
        for group in common::groups(tp) {
            let ctx = format!("tp {tp} ({} ranks)", group.ranks().len());
            let head = ParallelLmHead::from_rows(&group, vocab, hidden, |r| {
                Ok(w[r.start * hidden..r.end * hidden].to_vec())
            })
            .unwrap();
            let xs = DistTensor::replicate(&group, &x, [2, hidden]).unwrap();
            let full = head.forward(&xs).unwrap().to_host().unwrap();
            let last = &full[vocab..];
            let c = head.candidates(&xs, 5, &|_, v| v / 2.0).unwrap();
            // 5 from each rank (every shard holds at least 12), and one rest each.
            assert_eq!(c.best.len(), 5 * tp, "{ctx}");
            assert_eq!(c.rest.len(), tp, "{ctx}");
            // The first 5 are the best 5 of the row (by value, then id), values adjusted.
            let mut order: Vec<usize> = (0..vocab).collect();
            order.sort_by(|&a, &b| last[b].partial_cmp(&last[a]).unwrap().then(a.cmp(&b)));
            for (i, &(v, id)) in c.best[..5].iter().enumerate() {
                assert_eq!(id as usize, order[i], "{ctx}");
                assert_eq!(v, last[order[i]] / 2.0, "{ctx}");
            }
            // The listed and the rest's sums make the whole row's sum of exp(x / 2): each
            // side is a sum of 50 f64 terms below 1e3 (|x| < 15 here), so they agree to a
            // relative 1e-12, far above f64's 50 ulp of rounding.
            let m = f64::from(c.best[0].0);
            let listed: f64 = c.best.iter().map(|&(v, _)| (f64::from(v) - m).exp()).sum();
            let rest: f64 = c
                .rest
                .iter()
                .flatten()
                .map(|&(most, sum)| sum * (f64::from(most) - m).exp())
                .sum();
            let want: f64 = last.iter().map(|&v| (f64::from(v / 2.0) - m).exp()).sum();
            assert!(
                ((listed + rest) - want).abs() <= 1e-12 * want,
                "{ctx}: {} vs {want}",
                listed + rest
            );
        }
    }
}
