//! Checks of the CPU family's generated WGSL: every register block validates, every
//! accumulator is used once.

use super::*;

/// Every register block from 1 x 1 to the one the GEMM runs parses and validates, and
/// has its entry points (`main_tn` where the rows are whole vec4s) with the workgroup the
/// dispatch is sized for.
#[test]
fn every_gemm_cpu_variant_validates() {
    use wgpu::naga;
    for rows in 1..=gemm_cpu::ROWS {
        for cols4 in 1..=gemm_cpu::COLS4 {
            let at = WeightsBinding {
                binding: 1,
                vec4: true,
            };
            let src = [
                ACTIVATION_WGSL,
                GEMM_PARAMS_WGSL,
                &weights_prelude(DType::F32, at).unwrap(),
                &gemm_cpu::source(rows, cols4).unwrap(),
            ]
            .join("\n");
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{rows} x {cols4}: {}", e.emit_to_string(&src)));
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{rows} x {cols4}: {}", e.emit_to_string(&src)));
            let entries: Vec<_> = module
                .entry_points
                .iter()
                .map(|e| (e.name.as_str(), e.workgroup_size))
                .collect();
            let lanes = gemm_cpu::LANES as u32;
            let mut want = vec![
                ("main_in_out", [lanes, 1, 1]),
                ("main_out_in", [lanes, 1, 1]),
            ];
            if rows.is_multiple_of(4) {
                want.push(("main_tn", [lanes, 1, 1]));
            }
            assert_eq!(entries, want, "{rows} x {cols4}");
        }
    }
}

/// Each entry point declares, updates once per K step and stores every accumulator of
/// its block, and no other.
#[test]
fn gemm_cpu_entry_points_use_every_accumulator_once() {
    for (rows, cols4) in [(1, 1), (3, 2), (4, 1), (gemm_cpu::ROWS, gemm_cpu::COLS4)] {
        let src = gemm_cpu::entry_points(rows, cols4).unwrap();
        // main_in_out and main_out_in, and main_tn where the rows are whole vec4s.
        let entries = if rows.is_multiple_of(4) { 3 } else { 2 };
        for i in 0..rows + 1 {
            for j in 0..cols4 + 1 {
                let want = usize::from(i < rows && j < cols4);
                for pattern in [
                    format!("var a{i}_{j} = "),
                    format!("        a{i}_{j} = "),
                    format!(", a{i}_{j});"),
                ] {
                    assert_eq!(src.matches(&pattern).count(), entries * want, "{pattern}");
                }
            }
        }
    }
}
