//! What a listener hears of the built-in Grand L and XL, asserted at 48 kHz with the figures
//! the built-in models were shipped against (`assets/README.md`): released keys fall silent
//! without a click, notes are tone rather than noise (soft ones too), a hard strike sounds
//! brighter than a soft one, and held notes keep their partials ringing. The measures themselves are tested on instruments made to fail
//! them in `trainer::listen`'s unit tests (a ringing release, a click, noise, no brightening).

use ssm_runtime::soundcheck::ModelRenderer;
use ssm_runtime::{builtin, Model};
use trainer::listen::{notes, summarise, VELOCITIES};

const RATE: u32 = 48_000;
/// Level 0.45 s after a release below the level before it (dB).
const RELEASE_DROP: f64 = 40.0;
/// High-frequency energy just after a release over just before it (dB): no click.
const RELEASE_BURST: f64 = 0.0;
/// Harmonic-to-noise ratio, median over the notes, and at velocity 30 (dB). (No ceiling:
/// the measure's window leakage caps a pure additive tone near 37 dB, so issue 30's 40 dB
/// upper bound cannot tell a synthesizer from a piano with it.)
const HNR: f64 = 20.0;
const HNR_SOFT: f64 = 15.0;
/// Spectral centroid at velocity 110 over velocity 30, median over the keys.
const CENTROID_RATIO: f64 = 1.1;
/// Partials still ringing 0.3–0.8 s after the onset, median over the notes: regression limits
/// near what the shipped models reach with their key banks (the L 7, the XL 5; the
/// Salamander rings 8, issue 30's target).
fn ringing_limit(size: ssm_runtime::Size) -> f64 {
    match size {
        ssm_runtime::Size::L => 6.0,
        _ => 4.0,
    }
}

#[test]
fn the_built_in_models_release_cleanly_and_sound_like_tone() {
    let mut failures = Vec::new();
    for b in builtin::MODELS {
        let model = Model::from_bytes(b.bytes).expect("built-in model loads");
        let summary = summarise(&notes(&mut ModelRenderer {
            model: &model,
            sample_rate: RATE,
        }));
        let soft = VELOCITIES
            .iter()
            .position(|&v| v == 30)
            .expect("velocity 30");
        let hnr_soft = summary.hnr_by_velocity[soft];
        println!(
            "{} {}: drop {:.1} dB, burst {:+.1} dB, HNR {:.1} dB (v30 {:.1}), centroid v110/v30 {:.3}, partials ringing {}",
            builtin::FAMILY,
            b.size,
            summary.release_drop,
            summary.release_burst,
            summary.hnr,
            hnr_soft,
            summary.centroid_ratio,
            summary.ringing
        );
        for (what, ok, figure) in [
            (
                "release drop",
                summary.release_drop >= RELEASE_DROP,
                summary.release_drop,
            ),
            (
                "release burst",
                summary.release_burst <= RELEASE_BURST,
                summary.release_burst,
            ),
            ("harmonic-to-noise", summary.hnr >= HNR, summary.hnr),
            (
                "partials ringing",
                summary.ringing >= ringing_limit(b.size),
                summary.ringing,
            ),
            (
                "harmonic-to-noise at velocity 30",
                hnr_soft >= HNR_SOFT,
                hnr_soft,
            ),
            (
                "centroid ratio",
                summary.centroid_ratio >= CENTROID_RATIO,
                summary.centroid_ratio,
            ),
        ] {
            if !ok {
                failures.push(format!(
                    "{} {}: {what} {figure:.3}",
                    builtin::FAMILY,
                    b.size
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
