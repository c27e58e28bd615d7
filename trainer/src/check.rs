//! `trainer check`: the runtime's listening checks ([`ssm_runtime::soundcheck`]) for models and
//! for the SoundFont the synthetic set is rendered with. The SoundFont must pass them: a check
//! the training target fails asks for something the data does not teach.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ssm_runtime::soundcheck::{self, ModelRenderer, Outcome, Renderer, CHECK_MIDI_RATE};
use ssm_runtime::{KeyEvent, Model};

use crate::data::performance::Performance;
use crate::data::synth::{SynthSource, DEFAULT_SOUNDFONT};
use crate::data::Rates;

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Runtime models (.safetensors) to check; with neither this nor --builtin, the SoundFont.
    #[arg(long, num_args = 1..)]
    pub model: Vec<PathBuf>,
    /// Check the built-in models too.
    #[arg(long)]
    pub builtin: bool,
    /// Check this SoundFont's piano (the synthetic set's FluidR3_GM when given without a file).
    #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_SOUNDFONT)]
    pub soundfont: Option<PathBuf>,
    /// Sample rate the checks render at.
    #[arg(long, default_value_t = 48_000)]
    pub sample_rate: u32,
}

/// The SoundFont's piano playing the checks' events, placed on the 1 kHz frame grid as the
/// synthetic set's performances are.
pub struct SoundFontRenderer {
    source: SynthSource,
    sample_rate: u32,
}

impl SoundFontRenderer {
    pub fn open(font: &std::path::Path, sample_rate: u32) -> Result<SoundFontRenderer> {
        let rates = Rates::new(sample_rate, CHECK_MIDI_RATE)?;
        Ok(SoundFontRenderer {
            source: SynthSource::open(font, rates, 0)?,
            sample_rate,
        })
    }
}

impl Renderer for SoundFontRenderer {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn render(&mut self, events: &[(f64, KeyEvent)], seconds: f64) -> Vec<f32> {
        let frame = |t: f64| (t * CHECK_MIDI_RATE as f64).round() as u64;
        let mut events: Vec<(u64, KeyEvent)> = events.iter().map(|&(t, e)| (frame(t), e)).collect();
        events.sort_by_key(|&(f, _)| f);
        let frames = frame(seconds) as usize;
        // the renderer only fails on a broken SoundFont, which `open` has already read
        self.source
            .render(&Performance { events }, frames)
            .unwrap_or_else(|_| vec![0.0; frames * (self.sample_rate / CHECK_MIDI_RATE) as usize])
    }
}

/// (what was checked, its outcomes), in argument order.
pub fn run(args: &CheckArgs) -> Result<Vec<(String, Vec<Outcome>)>> {
    let mut results = Vec::new();
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
    let font = match (&args.soundfont, models.is_empty()) {
        (Some(f), _) => Some(f.clone()),
        (None, true) => Some(DEFAULT_SOUNDFONT.into()),
        (None, false) => None,
    };
    if let Some(font) = font {
        let mut r = SoundFontRenderer::open(&font, args.sample_rate)?;
        results.push((font.display().to_string(), soundcheck::all(&mut r)));
    }
    for (name, model) in &models {
        let mut r = ModelRenderer {
            model,
            sample_rate: args.sample_rate,
        };
        results.push((name.clone(), soundcheck::all(&mut r)));
    }
    Ok(results)
}

/// The outcomes as text, one block per checked thing.
pub fn report(results: &[(String, Vec<Outcome>)]) -> String {
    let mut s = String::new();
    for (name, outcomes) in results {
        let passed = outcomes.iter().filter(|o| o.passed).count();
        s += &format!("{name}: {passed}/{} checks pass\n", outcomes.len());
        for o in outcomes {
            s += &format!("  {o}\n");
        }
    }
    s
}
