use std::time::Instant;
use wgpu_tp::load::Checkpoint;
use wgpu_tp::model::Transformer;
use wgpu_tp::reference::{write_synthetic_llama, SyntheticLlama};
use wgpu_tp::Group;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let m = SyntheticLlama {
        vocab: 32000,
        hidden: 1024,
        intermediate: 2816,
        layers: 4,
        heads: 16,
        kv_heads: 16,
        positions: 512,
    };
    let dir = std::path::PathBuf::from("/tmp/prof-model");
    if !dir.join("model.safetensors").exists() {
        write_synthetic_llama(&dir, &m, 5)?;
    }
    let ck = Checkpoint::open(&dir)?;
    let kind = std::env::args().nth(1).unwrap_or("devices".into());
    let tp: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(4);
    let steps: usize = std::env::args()
        .nth(3)
        .map(|s| s.parse().unwrap())
        .unwrap_or(100);
    let g = if kind == "shared" {
        Group::builder().ranks_sharing_one_device(tp).build()?
    } else {
        Group::builder().ranks_on_one_adapter(tp).build()?
    };
    let model = Transformer::from_checkpoint(&g, &ck)?;
    let mut cache = model.new_cache(steps + 10)?;
    let mut next = model.next_token(&[1, 2, 3], &mut cache)?;
    let d0 = g.ranks()[0].dispatches();
    let t = Instant::now();
    for _ in 0..steps {
        next = model.next_token(&[next], &mut cache)?;
    }
    let dt = t.elapsed().as_secs_f64() / steps as f64;
    println!(
        "{kind} tp{tp}: {:.2} ms/step, {} dispatches/step on rank 0's device",
        dt * 1e3,
        (g.ranks()[0].dispatches() - d0) / steps as u64
    );
    Ok(())
}
