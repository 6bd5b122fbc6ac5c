//! The frequency plan: conjugate pairs, cropping, and its two spectra (rustfft on the
//! CPU, libtorch's FFT elsewhere) against each other.

use super::FrequencyPlan;
use crate::test_support::randn;
use tch::Kind;

#[test]
fn rustfft_spectrum_equals_the_libtorch_fft_path() {
    for (sa, sb) in [((6, 8), (6, 8)), ((8, 8), (4, 4)), ((7, 5), (7, 5)), ((6, 6), (3, 5))] {
        let plan = FrequencyPlan::new(sa, sb);
        let x = randn(9, 5 * 3, sa.0 * sa.1).view([5, 3, sa.0, sa.1]);
        let shift = randn(10, 3, sa.0 * sa.1).view([3, sa.0, sa.1]);
        let cpu = plan.spectrum_rustfft(&x, &shift, Kind::Double);
        let torch = plan.spectrum_torch(&x, &shift, Kind::Double);
        assert_eq!((cpu.kind(), torch.kind()), (Kind::Double, Kind::Double));
        assert_eq!(cpu.size(), torch.size());
        assert_eq!(cpu.size()[0] as usize, plan.computed.len());
        let diff = (&cpu - &torch).abs().max().double_value(&[]);
        assert!(diff < 1e-12, "{sa:?} vs {sb:?}: {diff}");

        // In float32 (analysis.precision): written straight from the float64 transform,
        // no float64 copy made. rustfft's is its float64 spectrum rounded as libtorch
        // rounds; libtorch's within a rounding of it.
        let rounded = cpu.to_kind(Kind::Float);
        let (cpu32, torch32) = (plan.spectrum_rustfft(&x, &shift, Kind::Float), plan.spectrum_torch(&x, &shift, Kind::Float));
        assert_eq!((cpu32.kind(), torch32.kind()), (Kind::Float, Kind::Float));
        assert!(
            bool::try_from(cpu32.eq_tensor(&rounded).all()).unwrap(),
            "{sa:?} vs {sb:?}: rustfft's float32 spectrum is not float64's rounded"
        );
        let (diff, scale) = ((&torch32 - &rounded).abs().max().double_value(&[]), cpu.abs().max().double_value(&[]));
        assert!(diff <= f64::from(f32::EPSILON) * scale, "{sa:?} vs {sb:?}: libtorch's float32 spectrum {diff} from rustfft's");
    }
}

#[test]
fn frequency_plan_pairs_conjugates_and_keeps_cropped_nyquist() {
    // Same sizes: (u, v) pairs with (-u, -v); self-conjugate ones stand alone.
    let p = FrequencyPlan::new((4, 4), (4, 4));
    assert_eq!(p.source.len(), 16);
    assert_eq!(p.multiplicity.iter().sum::<usize>(), 16);
    assert_eq!(p.computed.len(), 10); // 4 self-conjugate + 12 / 2
    assert_eq!(p.source[1], p.source[3]); // (0, 1) and (0, -1)
    assert_eq!(p.source[4 + 2], p.source[3 * 4 + 2]); // (1, -2) and (-1, 2 = -2 mod 4)
                                                      // Cropped 8 -> 4: frequency 2 was cropped away, so (1, -2) has no mirror.
    let p = FrequencyPlan::new((8, 8), (4, 4));
    assert_eq!(p.multiplicity.iter().sum::<usize>(), 16);
    assert_ne!(p.source[4 + 2], p.source[3 * 4 + 2]);
    assert_eq!(p.source[1], p.source[3]);
    // 9 locations without a -2: (0, 0) alone and 4 pairs; the 7 with a -2 alone.
    assert_eq!(p.computed.len(), 12);
}
