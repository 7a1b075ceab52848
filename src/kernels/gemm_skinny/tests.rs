//! Checks of the generated source: every accumulator and row used as the entries need.

use super::*;

/// Each main entry declares, updates once per K step and keeps every accumulator of
/// its block, and no other.
#[test]
fn every_accumulator_is_declared_updated_and_kept_once_per_entry() {
    for v in Skinny::all() {
        let src = v.source(false).unwrap();
        let (in_out, out_in) = src.split_once("fn main_out_in(").expect("both entries");
        for (layout, text) in [(WeightLayout::InOut, in_out), (WeightLayout::OutIn, out_in)] {
            let text = text.split("fn finish(").next().unwrap_or(text);
            let kept = match v.mapping(layout) {
                // tests::every_sweep_row_and_accumulator_is_used
                Lanes::Sweep => continue,
                Lanes::AlongK => ("] = a", ";"),
                Lanes::AlongN => ("chunk, a", ");"),
            };
            let units = v.units(layout);
            for i in 0..v.rows + 1 {
                for j in 0..units + 1 {
                    let want = usize::from(i < v.rows && j < units);
                    for pattern in [
                        format!("var a{i}_{j} = "),
                        format!("        a{i}_{j} = "),
                        format!("{}{i}_{j}{}", kept.0, kept.1),
                    ] {
                        let got = text.matches(&pattern).count();
                        assert_eq!(got, want, "{v:?} {layout:?} {pattern}");
                    }
                }
            }
        }
    }
}

#[test]
fn the_smallest_block_holding_the_rows_runs() {
    let rows = |m| Skinny::new(m, true, false, false).rows;
    assert_eq!(
        [rows(1), rows(2), rows(4), rows(5), rows(16), rows(17)],
        [1, 4, 4, 16, 16, 16]
    );
}

/// Along K, one block per lane fits WebGPU's minimum workgroup memory (16 KiB).
#[test]
fn the_sums_across_lanes_fit_the_minimum_workgroup_memory() {
    for v in Skinny::all() {
        for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
            let bytes = v.lanes() * v.rows * v.units(layout) * v.width() * 4;
            assert!(
                v.mapping(layout) != Lanes::AlongK || bytes <= 16384,
                "{v:?}: {bytes}"
            );
            assert!(v.rows * v.units(layout) <= 128, "{v:?}");
        }
    }
}

/// A sweep entry reads every one of its rows of W and of X, updates each row's
/// accumulator once per row of K, and stores each.
#[test]
fn every_sweep_row_and_accumulator_is_used() {
    for v in Skinny::all() {
        if v.mapping(WeightLayout::InOut) != Lanes::Sweep {
            continue;
        }
        let src = v.source(false).unwrap();
        // Twice each: the loop for whole blocks and the checked one.
        for r in 0..SWEEP_ROWS {
            assert_eq!(
                src.matches(&format!("let b{r} = load_wt(w{r} + c);"))
                    .count(),
                2
            );
            for i in 0..v.rows {
                let update = format!("a{i}_0 = fma(v{i}_{r}, b{r}, a{i}_0);");
                assert_eq!(src.matches(&update).count(), 1, "{v:?} {update}");
                let checked = format!("fma(v{i}_{r}, b{r}, a{i}_0), in{r})");
                assert_eq!(src.matches(&checked).count(), 1, "{v:?} {checked}");
            }
        }
        for i in 0..v.rows {
            let store = format!("store(p, {i}u, c, block, a{i}_0);");
            assert_eq!(src.matches(&store).count(), 2, "{v:?}");
        }
        assert!(!src.contains(&format!("a{}_0", v.rows)), "{v:?}");
    }
}
