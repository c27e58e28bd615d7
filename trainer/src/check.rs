//! `trainer check`: the runtime's listening checks ([`ssm_runtime::soundcheck`]) for models and
//! for the SoundFont the synthetic set is rendered with. The SoundFont must pass them: a check
//! the training target fails asks for something the data does not teach.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ssm_runtime::soundcheck::{self, ModelRenderer, Outcome, Renderer, CHECK_MIDI_RATE};
use ssm_runtime::{KeyEvent, Model};

use crate::data::performance::Performance;
use crate::data::salamander::Library;
use crate::data::synth::{ReferencePiano, SynthSource, DEFAULT_SOUNDFONT, OTHER_SOUNDFONT};
use crate::data::Rates;
use crate::{listen, stereo, unseen};

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Runtime models (.safetensors) to check; with neither this, --builtin nor --instrument,
    /// the SoundFont.
    #[arg(long, num_args = 1..)]
    pub model: Vec<PathBuf>,
    /// Check the built-in models too.
    #[arg(long)]
    pub builtin: bool,
    /// Check this SoundFont's piano (the synthetic set's FluidR3_GM when given without a file).
    #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_SOUNDFONT)]
    pub soundfont: Option<PathBuf>,
    /// Check these pianos too: `salamander`, `salamander:DIR`, `FILE.sf2`.
    #[arg(long, num_args = 1.., value_parser = ReferencePiano::parse)]
    pub instrument: Vec<ReferencePiano>,
    /// Also measure what a listener hears (release drop and burst, harmonic-to-noise per
    /// velocity, brightness against velocity, spectral distance to --target), on the
    /// training generator's performances and on material unlike training (single notes,
    /// long notes, chords under the pedal, repeated notes, music: partials ringing and a
    /// Fréchet distance too), with FluidR3 and TimGM6mb beside (when installed).
    #[arg(long)]
    pub listen: bool,
    /// The piano the listening measures' spectral distance is taken to.
    #[arg(long, default_value = "salamander", value_parser = ReferencePiano::parse)]
    pub target: ReferencePiano,
    /// Sample rate the checks render at.
    #[arg(long, default_value_t = 48_000)]
    pub sample_rate: u32,
}

/// A sampled piano (the Salamander sampler or a SoundFont) playing the checks' events, placed
/// on the 1 kHz frame grid as the synthetic set's performances are.
pub struct InstrumentRenderer {
    source: SynthSource,
    sample_rate: u32,
}

impl InstrumentRenderer {
    pub fn open(instrument: &ReferencePiano, sample_rate: u32) -> Result<InstrumentRenderer> {
        let rates = Rates::new(sample_rate, CHECK_MIDI_RATE)?;
        Ok(InstrumentRenderer {
            source: SynthSource::open(instrument, rates, 0)?,
            sample_rate,
        })
    }
}

impl Renderer for InstrumentRenderer {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn render(&mut self, events: &[(f64, KeyEvent)], seconds: f64) -> Vec<f32> {
        let frame = |t: f64| (t * CHECK_MIDI_RATE as f64).round() as u64;
        let mut events: Vec<(u64, KeyEvent)> = events.iter().map(|&(t, e)| (frame(t), e)).collect();
        events.sort_by_key(|&(f, _)| f);
        let frames = frame(seconds) as usize;
        // the renderers only fail on a broken file, which `open` has already read
        self.source
            .render(&Performance { events }, frames)
            .unwrap_or_else(|_| vec![0.0; frames * (self.sample_rate / CHECK_MIDI_RATE) as usize])
    }
}

/// What `check` measured of one renderer.
pub struct Checked {
    pub name: String,
    pub outcomes: Vec<Outcome>,
    /// With --listen: the listening measures and the spectral distance to the target.
    pub listen: Option<(listen::Summary, f64)>,
    /// With --listen: the figures on material unlike training.
    pub unseen: Option<unseen::Figures>,
    /// With --listen, for a stereo model against the Salamander: its stereo image.
    pub image: Option<stereo::Image>,
}

/// Where `assets/demo.mid` is.
fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets")
}

/// Everything checked, in argument order (instruments first, then models).
pub fn run(args: &CheckArgs) -> Result<Vec<Checked>> {
    let mut models = Vec::new();
    for path in &args.model {
        let model = Model::load(path).with_context(|| format!("cannot load {}", path.display()))?;
        models.push((path.display().to_string(), model));
    }
    if args.builtin {
        for b in ssm_runtime::builtin::MODELS {
            let model = Model::from_bytes(b.bytes)
                .map_err(|e| anyhow::anyhow!("built-in {}: {e}", b.size))?;
            models.push((format!("built-in {}", b.size), model));
        }
    }
    let mut instruments = args.instrument.clone();
    match (&args.soundfont, models.is_empty() && instruments.is_empty()) {
        (Some(f), _) => instruments.push(ReferencePiano::SoundFont(f.clone())),
        (None, true) => instruments.push(ReferencePiano::fluid()),
        (None, false) => {}
    }
    let (target, unseen_target) = if args.listen {
        let mut t = InstrumentRenderer::open(&args.target, args.sample_rate)?;
        let unseen = unseen::render(&mut t, &assets(), None)?;
        (Some(listen::render_performances(&mut t)), Some(unseen))
    } else {
        (None, None)
    };
    let mut results = Vec::new();
    let mut measure = |name: String, r: &mut dyn Renderer| -> Result<()> {
        let outcomes = soundcheck::all(r);
        let listen = target.as_ref().map(|t| {
            let summary = listen::summarise(&listen::notes(r));
            let distance =
                listen::spectral_distance(&listen::render_performances(r), t, args.sample_rate);
            (summary, distance)
        });
        let unseen = match &unseen_target {
            Some(t) => {
                let renders = unseen::render(r, &assets(), Some(t))?;
                Some(unseen::figures(&renders, t, args.sample_rate))
            }
            None => None,
        };
        results.push(Checked {
            name,
            outcomes,
            listen,
            unseen,
            image: None,
        });
        Ok(())
    };
    if args.listen {
        // the target itself, and the two General MIDI pianos to compare with
        let others = [
            ReferencePiano::fluid(),
            ReferencePiano::SoundFont(OTHER_SOUNDFONT.into()),
        ];
        for other in others {
            let installed = match &other {
                ReferencePiano::SoundFont(f) => f.is_file(),
                ReferencePiano::Salamander(_) => true,
            };
            let named = |i: &ReferencePiano| i.to_string() == other.to_string();
            if installed && !instruments.iter().any(named) {
                instruments.push(other);
            }
        }
        if !instruments
            .iter()
            .any(|i| i.to_string() == args.target.to_string())
        {
            instruments.insert(0, args.target.clone());
        }
    }
    for instrument in &instruments {
        let mut r = InstrumentRenderer::open(instrument, args.sample_rate)?;
        measure(instrument.to_string(), &mut r)?;
    }
    for (name, model) in &models {
        let mut r = ModelRenderer {
            model,
            sample_rate: args.sample_rate,
        };
        measure(name.clone(), &mut r)?;
    }
    // the stereo image, heard against the Salamander's two microphones
    let any_stereo = models.iter().any(|(_, m)| m.channels == 2);
    if let (true, true, ReferencePiano::Salamander(dir)) = (args.listen, any_stereo, &args.target) {
        let offset = results.len() - models.len();
        let lib = Library::open(dir)?;
        for (i, (_, model)) in models.iter().enumerate() {
            if model.channels == 2 {
                results[offset + i].image = Some(stereo::image(model, &lib, &assets())?);
            }
        }
    }
    Ok(results)
}

/// The outcomes as text, one block per checked thing, then the listening table.
pub fn report(results: &[Checked], rate: u32) -> String {
    let mut s = String::new();
    for c in results {
        let passed = c.outcomes.iter().filter(|o| o.passed).count();
        s += &format!("{}: {passed}/{} checks pass\n", c.name, c.outcomes.len());
        for o in &c.outcomes {
            s += &format!("  {o}\n");
        }
    }
    let table = listen_table(results, rate);
    if !table.is_empty() {
        s += "\n";
        s += &table;
    }
    let rows: Vec<(String, unseen::Figures)> = results
        .iter()
        .filter_map(|c| c.unseen.clone().map(|f| (c.name.clone(), f)))
        .collect();
    if !rows.is_empty() {
        s += "\n";
        s += &unseen::table(&rows, rate);
    }
    for c in results {
        if let Some(image) = &c.image {
            s += &format!("\n{}, stereo image on material unlike training:\n", c.name);
            s += &stereo::summary(image);
        }
    }
    s
}

/// The listening measures' table (empty without --listen).
pub fn listen_table(results: &[Checked], rate: u32) -> String {
    let rows: Vec<(String, listen::Summary, f64)> = results
        .iter()
        .filter_map(|c| c.listen.clone().map(|(m, d)| (c.name.clone(), m, d)))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    listen::table(&rows, rate)
}
