//! The built-in models on material unlike their training (`trainer::unseen`: single notes,
//! long notes, chords under the pedal, repeated notes, music written as scores), against the
//! Salamander: the two distances a listener's ear follows. The L's spectral distance is below
//! both General MIDI SoundFonts' (the README's claim; its Fréchet distance is too on the full
//! library, 182 against TimGM6mb's 187, but not against this subset, 168 against 150, so that
//! is not asserted here); both built-ins are kept from regressing. In CI only the library's velocity-8 layer is there (the test subset), so
//! the target here is that layer alone and the figures differ from `assets/README.md`'s (full
//! library).

mod common;

use std::path::Path;

use ssm_runtime::soundcheck::ModelRenderer;
use ssm_runtime::{builtin, Size};
use trainer::check::InstrumentRenderer;
use trainer::data::synth::{ReferencePiano, DEFAULT_SOUNDFONT, OTHER_SOUNDFONT};
use trainer::unseen;

const RATE: u32 = 48_000;

/// (size, spectral distance, Fréchet distance) the built-ins must stay under against the
/// subset: regression limits near what they measured when they shipped (L 23.36 and 168; XL
/// with its key bank 22.82 and 263, before it 25.84 and 486).
const LIMITS: [(Size, f64, f64); 2] = [(Size::L, 24.5, 220.0), (Size::XL, 24.0, 340.0)];

#[test]
fn the_built_in_models_stay_near_the_recording_on_unseen_material() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets");
    let subset = ReferencePiano::Salamander(common::real_subset());
    let mut target = InstrumentRenderer::open(&subset, RATE).unwrap();
    let reference = unseen::render(&mut target, &assets, None).unwrap();
    // the two General MIDI pianos: the nearer one's spectral distance
    let mut soundfonts = f64::INFINITY;
    for font in [DEFAULT_SOUNDFONT, OTHER_SOUNDFONT] {
        let mut r =
            InstrumentRenderer::open(&ReferencePiano::SoundFont(font.into()), RATE).unwrap();
        let renders = unseen::render(&mut r, &assets, Some(&reference)).unwrap();
        let f = unseen::figures(&renders, &reference, RATE);
        println!(
            "{font}: spectral distance {:.2}, Fréchet {:.0}",
            f.distance, f.frechet
        );
        soundfonts = soundfonts.min(f.distance);
    }
    for (size, max_distance, max_frechet) in LIMITS {
        let model = builtin::require(size).unwrap();
        let mut r = ModelRenderer {
            model: &model,
            sample_rate: RATE,
        };
        let renders = unseen::render(&mut r, &assets, Some(&reference)).unwrap();
        let f = unseen::figures(&renders, &reference, RATE);
        println!(
            "built-in {}: spectral distance {:.2} (at most {max_distance}), Fréchet {:.0} (at most {max_frechet}), partials ringing {}",
            size.label(),
            f.distance,
            f.frechet,
            f.notes.ringing
        );
        assert!(
            f.distance <= max_distance,
            "built-in {}: distance {:.2}",
            size.label(),
            f.distance
        );
        assert!(
            f.frechet <= max_frechet,
            "built-in {}: Fréchet {:.0}",
            size.label(),
            f.frechet
        );
        if size == Size::L {
            assert!(
                f.distance < soundfonts,
                "the built-in L's spectral distance {:.2} is not below both SoundFonts' ({:.2})",
                f.distance,
                soundfonts
            );
        }
    }
}
