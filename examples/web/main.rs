//! The checks and a model in a web page (wasm32 + WebGPU): `verify`'s three checks
//! (column-parallel, row-parallel, the Megatron MLP) at tp 1, 2 and 4 on logical ranks
//! sharing the browser's one device, each against the f64 reference with its rigorous
//! bound, and the tiny Llama fixture generating at tp 2 from a text prompt, its tokens
//! checked against transformers' and its decode rate shown.
//!
//! Built by `scripts/web-build.sh` (cargo for wasm32-unknown-unknown, then
//! `wasm-bindgen --target web`) into a folder any static file server can serve; run in
//! headless Chromium by `scripts/web-test.py`. The page shows one line per result in
//! `#log` and `DONE` (or `ERROR: ...`) in `#status`. A panic, if any, reaches the
//! console readable (`console_error_panic_hook`) and the page (`panicked: ...`), and an
//! error is shown on the page as the library's `Error` says it.
//!
//! `index.html?fault=lost|refused|too-large` runs one failure instead, to show it ends in
//! the library's `Error` on the page (`ERROR: ...` in `#status`, the `Error` value in
//! `#log`), as natively: a device lost (`destroy()`, as when the tab's GPU process
//! restarts), a `requestDevice` the browser refuses (limits past the adapter's), a row
//! past WebGPU's default binding limit (lower than a desktop's).
#![cfg(target_arch = "wasm32")]

use wasm_bindgen::prelude::*;
#[cfg(all(feature = "safetensors", feature = "tokenizer"))]
use wgpu_tp::model::Transformer;
use wgpu_tp::reference::{self, Approx, Rng};
use wgpu_tp::{
    Activation, ColumnParallelConfig, ColumnParallelLinear, DistTensor, Error, Group, HostLinear,
    ParallelMlp, Placement, RowParallelConfig, RowParallelLinear, Tensor, WeightLayout,
};

type Res<T> = Result<T, String>;

/// The tiny Llama fixture's prompt and transformers' 16 greedy tokens for it
/// (tests/fixtures/models/tiny-llama/reference.json, as .ci/run checks natively).
#[cfg(all(feature = "safetensors", feature = "tokenizer"))]
const PROMPT: &str = "t1 t17 t42 t99 t3 t64 t5";
#[cfg(all(feature = "safetensors", feature = "tokenizer"))]
const GREEDY: [u32; 16] = [
    70, 93, 15, 76, 70, 8, 103, 83, 69, 29, 83, 62, 59, 8, 88, 126,
];

fn element(id: &str) -> Option<web_sys::Element> {
    web_sys::window()?.document()?.get_element_by_id(id)
}

/// Appends a line to the page's log (and the console).
fn log(line: &str) {
    web_sys::console::log_1(&line.into());
    if let Some(e) = element("log") {
        let text = e.text_content().unwrap_or_default();
        e.set_text_content(Some(&format!("{text}{line}\n")));
    }
}

fn set_status(s: &str) {
    if let Some(e) = element("status") {
        e.set_text_content(Some(s));
    }
}

#[cfg(all(feature = "safetensors", feature = "tokenizer"))]
fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.now())
}

#[wasm_bindgen(start)]
pub fn start() {
    // A panic, if any: readable in the console, and on the page for the test to see.
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        log(&format!("panicked: {info}"));
        set_status(&format!("ERROR: panicked: {info}"));
    }));
    let fault_kind = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .and_then(|q| q.strip_prefix("?fault=").map(String::from));
    wasm_bindgen_futures::spawn_local(async {
        let outcome = match fault_kind {
            Some(kind) => fault(&kind).await,
            None => run().await,
        };
        match outcome {
            Ok(()) => set_status("DONE"),
            Err(e) => {
                log(&format!("error: {e}"));
                set_status(&format!("ERROR: {e}"));
            }
        }
    });
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// One failure (see the module docs): the library's `Error`, its value logged.
async fn fault(kind: &str) -> Res<()> {
    let e = match fault_error(kind).await {
        Ok(()) => return Err(format!("fault {kind:?} gave no error")),
        Err(e) => e,
    };
    log(&format!("fault {kind}: {e:?}"));
    Err(e.to_string())
}

async fn fault_error(kind: &str) -> Result<(), Error> {
    match kind {
        // Two devices from the page's adapter; the second destroyed under an all-reduce.
        "lost" => {
            let group = Group::builder()
                .ranks_on_one_adapter(2)
                .build_async()
                .await?;
            let x = DistTensor::replicate(&group, &[1.0; 8], [2, 4])?;
            group.ranks()[1].device().destroy();
            x.redistribute_async(Placement::Partial)
                .await?
                .all_reduce_async()
                .await
                .map(drop)
        }
        "refused" => {
            let limits = wgpu_tp::wgpu::Limits {
                // 4 PiB: past any adapter, and a number JS holds (u64::MAX fails as a TypeError
                // before the browser looks at the adapter).
                max_buffer_size: 1 << 52,
                ..Default::default()
            };
            Group::builder()
                .ranks_sharing_one_device(2)
                .required_limits(limits)
                .build_async()
                .await
                .map(drop)
        }
        // One row of more than the 128 MiB WebGPU binds by default.
        "too-large" => {
            let group = Group::builder()
                .ranks_sharing_one_device(1)
                .required_limits(wgpu_tp::wgpu::Limits::default())
                .build_async()
                .await?;
            let r = &group.ranks()[0];
            let limit = r.limits().max_storage_buffer_binding_size as usize;
            Tensor::zeros(r, [1, limit / 4 + 1]).map(drop)
        }
        _ => Err(Error::InvalidArgument {
            op: "web page",
            message: format!("unknown fault {kind:?} (lost, refused, too-large)"),
        }),
    }
}

async fn run() -> Res<()> {
    let (batch, hidden, ffn) = (4, 64, 256);
    let mut rng = Rng::new(0);
    let w_col = rng.xavier(hidden * hidden, hidden, hidden);
    let w_row = rng.xavier(hidden * hidden, hidden, hidden);
    let w1 = rng.xavier(hidden * ffn, hidden, ffn);
    let w2 = rng.xavier(ffn * hidden, ffn, hidden);
    let x = Rng::new(81).normal(batch * hidden);
    let layout = WeightLayout::InOut;
    let x_ref = Approx::exact(&x);
    for tp in [1, 2, 4] {
        let group = Group::builder()
            .ranks_sharing_one_device(tp)
            .build_async()
            .await
            .map_err(err)?;
        if tp == 1 {
            let i = group.ranks()[0].adapter_info();
            log(&format!(
                "adapter: {} ({:?}, {:?})",
                i.name, i.backend, i.device_type
            ));
        }
        // Column-parallel: distinct shards, all-gathered.
        let col = ColumnParallelLinear::from_full(
            &group,
            HostLinear::new(&w_col, hidden, hidden, layout),
            ColumnParallelConfig::default(),
        )
        .map_err(err)?;
        let xd = DistTensor::replicate(&group, &x, [batch, hidden]).map_err(err)?;
        let got = col
            .forward_async(&xd)
            .await
            .map_err(err)?
            .to_host_per_rank_async()
            .await
            .map_err(err)?;
        let want = reference::linear(&x_ref, [batch, hidden], &w_col, hidden, layout, None)
            .map_err(err)?;
        report(
            "column-parallel",
            tp,
            got.iter().map(|v| want.check(v)),
            true,
        );
        // Row-parallel: input chunks, one all-reduce.
        let row = RowParallelLinear::from_full(
            &group,
            HostLinear::new(&w_row, hidden, hidden, layout),
            RowParallelConfig::default().input_is_parallel(true),
        )
        .map_err(err)?;
        let chunks = DistTensor::shard(&group, &x, [batch, hidden], 1).map_err(err)?;
        let before = group.stats().all_reduces();
        let y = row.forward_async(&chunks).await.map_err(err)?;
        let reduces = group.stats().all_reduces() - before;
        let got = y.to_host_per_rank_async().await.map_err(err)?;
        let want = reference::linear(&x_ref, [batch, hidden], &w_row, hidden, layout, None)
            .map_err(err)?;
        report(
            "row-parallel",
            tp,
            got.iter().map(|v| want.check(v)),
            reduces == 1,
        );
        // The Megatron MLP: column -> gelu -> row, one all-reduce, the same bits on every
        // rank.
        let act = Activation::GeluTanh;
        let mlp = ParallelMlp::from_full(
            &group,
            HostLinear::new(&w1, hidden, ffn, layout),
            HostLinear::new(&w2, ffn, hidden, layout),
            act,
        )
        .map_err(err)?;
        let before = group.stats().all_reduces();
        let y = mlp.forward_async(&xd).await.map_err(err)?;
        let reduces = group.stats().all_reduces() - before;
        let got = y.to_host_per_rank_async().await.map_err(err)?;
        let h = reference::activation(
            &reference::linear(&x_ref, [batch, hidden], &w1, ffn, layout, None).map_err(err)?,
            act,
        );
        let want = reference::linear(&h, [batch, ffn], &w2, hidden, layout, None).map_err(err)?;
        let same = got.iter().all(|v| {
            v.iter()
                .map(|f| f.to_bits())
                .eq(got[0].iter().map(|f| f.to_bits()))
        });
        report(
            "megatron mlp",
            tp,
            got.iter().map(|v| want.check(v)),
            reduces == 1 && same,
        );
    }
    #[cfg(all(feature = "safetensors", feature = "tokenizer"))]
    return generate().await;
    #[cfg(not(all(feature = "safetensors", feature = "tokenizer")))]
    {
        log("generation: not in this build (features safetensors and tokenizer)");
        Ok(())
    }
}

/// One check's line: the largest difference over the ranks, the largest bound, and
/// PASS only when every rank is within its bound and `more` holds.
fn report(name: &str, tp: usize, checks: impl Iterator<Item = reference::Check>, more: bool) {
    let (mut diff, mut bound, mut pass) = (0.0f64, 0.0f64, more);
    for c in checks {
        diff = diff.max(c.max_abs_diff);
        bound = bound.max(c.tolerance);
        pass &= c.pass;
    }
    let verdict = if pass { "PASS" } else { "FAIL" };
    log(&format!(
        "{name} tp {tp}: {verdict} (max |diff| vs f64 reference {diff:.3e}, bound {bound:.3e})"
    ));
}

/// The bytes of `url`, fetched.
#[cfg(all(feature = "safetensors", feature = "tokenizer"))]
async fn fetch(url: &str) -> Res<Vec<u8>> {
    let window = web_sys::window().ok_or("no window")?;
    let resp = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(|e| format!("{url}: {e:?}"))?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|e| format!("{url}: {e:?}"))?;
    if !resp.ok() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    let buf =
        wasm_bindgen_futures::JsFuture::from(resp.array_buffer().map_err(|e| format!("{e:?}"))?)
            .await
            .map_err(|e| format!("{url}: {e:?}"))?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

/// The tiny Llama at tp 2: text in, text out, tokens checked, decode rate shown.
#[cfg(all(feature = "safetensors", feature = "tokenizer"))]
async fn generate() -> Res<()> {
    let dir = "tiny-llama";
    let config = fetch(&format!("{dir}/config.json")).await?;
    let weights = fetch(&format!("{dir}/model.safetensors")).await?;
    let names = [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ];
    let mut files = Vec::new();
    for n in names {
        files.push((n, fetch(&format!("{dir}/{n}")).await?));
    }
    let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let tokenizer = wgpu_tp::load::Tokenizer::from_bytes(&files).map_err(err)?;
    let config = std::str::from_utf8(&config).map_err(err)?;
    let checkpoint = wgpu_tp::load::Checkpoint::from_bytes(config, weights).map_err(err)?;
    let group = Group::builder()
        .ranks_sharing_one_device(2)
        .build_async()
        .await
        .map_err(err)?;
    let model = Transformer::from_checkpoint(&group, &checkpoint).map_err(err)?;
    let prompt = tokenizer.encode(PROMPT).map_err(err)?;
    let mut cache = model
        .new_cache(prompt.len() + GREEDY.len() + 1)
        .map_err(err)?;
    let mut tokens = Vec::new();
    let mut next = model
        .next_token_async(&prompt, &mut cache)
        .await
        .map_err(err)?;
    tokens.push(next);
    let t0 = now_ms();
    while tokens.len() < GREEDY.len() {
        next = model
            .next_token_async(&[next], &mut cache)
            .await
            .map_err(err)?;
        tokens.push(next);
    }
    let ms = now_ms() - t0;
    let text = tokenizer.decode(&tokens).map_err(err)?;
    log(&format!("prompt: {PROMPT:?} -> {prompt:?}"));
    log(&format!("generated: {text:?} {tokens:?}"));
    let rate = (GREEDY.len() - 1) as f64 / (ms / 1e3);
    log(&format!(
        "decode: {} tokens in {ms:.0} ms ({rate:.1} tokens/s)",
        GREEDY.len() - 1
    ));
    let verdict = if tokens == GREEDY { "PASS" } else { "FAIL" };
    log(&format!(
        "generation tp 2: {verdict} (transformers' tokens {GREEDY:?})"
    ));
    Ok(())
}
