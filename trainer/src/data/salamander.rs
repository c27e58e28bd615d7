//! The sampler that renders the synthetic performances with the Salamander Grand Piano V3
//! (a Yamaha C5 sampled by Alexander Holm, CC BY 3.0): the training instrument of the
//! built-in models.
//!
//! The library is a folder of samples named as the npm packages `@audio-samples/piano-*`
//! name them (`scripts/fetch-salamander.sh` puts all 17 packages into one folder): `A0v1.ogg`
//! … `C8v16.ogg` (every third key, 16 velocity layers, 48 kHz stereo Vorbis) and `rel1.ogg` …
//! `rel88.ogg` (damper releases). WAV files of the same names work too (the original
//! distribution's layout), and so does any subset: a few keys of one layer are enough for the
//! tests.
//!
//! Per note: the nearest sampled key, band-limited resampled to the key's pitch and the
//! training rate, from its attack (the recordings' ~12 ms of silence before it are cut, so an
//! onset lands exactly on its frame's first sample); the two velocity layers around the
//! velocity, crossfaded at equal power; a velocity→gain curve that gives the 16 layers (which
//! span only ~20 dB) a real piano's dynamic range; at note-off (or pedal-up) the damper, a
//! fast exponential fade, and a release sample. The sustain pedal holds released keys until
//! it lifts; a key struck again while it sounds damps its previous note. Mono mix (the
//! channels' mean) for training; the left or the right channel alone for the stereo head
//! (`Channel`), each cut at the attack the mix finds, so the two stay aligned.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use ssm_runtime::model::LOWEST_NOTE;
use ssm_runtime::roll::KeyEvent;
use ssm_runtime::KEYS;

use super::audio;
use super::performance::Performance;

/// Velocity layers of the full library.
pub const LAYERS: usize = 16;
/// Sample rate of the recordings.
const SOURCE_RATE: u32 = 48_000;
/// The attack starts where the signal first reaches this far below its peak …
const ONSET_DB: f64 = -30.0;
/// … less this lead, so the attack's first rise is kept.
const ONSET_LEAD_SECONDS: f64 = 0.001;
/// The attack (and the peak it is measured against) is looked for in the first this many
/// seconds, so it is found at the same sample however much of a recording is decoded.
const ATTACK_SEARCH_SECONDS: f64 = 0.2;
/// Seconds of attack over which a layer's level is measured.
const LEVEL_SECONDS: f64 = 0.5;
/// Dynamic range of the velocity curve: level(v) = CURVE_DB · log10(v / 127) dB, the
/// SoundFont standard's concave curve (velocity 30: −25 dB, velocity 1: −84 dB).
const CURVE_DB: f64 = 40.0;
/// Level of the release sample below the note's own (fortissimo-relative) level.
const RELEASE_DB: f64 = -30.0;
/// The damper's 60 dB decay: 0.35 s at A0 (heavy bass strings) down to 0.12 s at C8.
const DAMPER_T60_LOW: f64 = 0.35;
const DAMPER_T60_HIGH: f64 = 0.12;
/// A voice stops once its envelope is this far down.
const SILENT: f32 = 1e-5;

/// Where `scripts/fetch-salamander.sh` puts the library by default.
pub fn default_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("piano-ssm").join("salamander-1.0.5")
}

/// A sample library on disk, its measured layer levels, and resampled notes cached by use.
pub struct Library {
    dir: PathBuf,
    /// (MIDI key, 1-based layer) → file, for the sampled keys.
    notes: HashMap<(u8, usize), PathBuf>,
    /// Sampled keys, ascending.
    keys: Vec<u8>,
    /// Layers present (1-based), ascending, and each one's attack level in dB below the
    /// loudest present layer (median over keys).
    layers: Vec<usize>,
    layer_db: Vec<f64>,
    /// rel1..rel88 → file.
    releases: HashMap<usize, PathBuf>,
    /// (key, layer, rate) → the note as far as decoded.
    notes_cache: Mutex<HashMap<NoteAt, Decoded>>,
    /// (key, rate, channel) → its release sample.
    releases_cache: Mutex<HashMap<(u8, u32, Channel), Samples>>,
}

/// A recorded note at one rate: (key, velocity layer, sample rate, channel).
type NoteAt = (u8, usize, u32, Channel);

/// Which of a recording's channels the sampler plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// the mean of the channels (what training hears)
    Mix,
    /// the first channel
    Left,
    /// the second channel (the first of a mono file)
    Right,
}

impl Channel {
    /// This channel of `[mix, left, right]`.
    fn of<T>(self, [mix, left, right]: [T; 3]) -> T {
        match self {
            Channel::Mix => mix,
            Channel::Left => left,
            Channel::Right => right,
        }
    }
}

/// Decoded samples, shared between the batches that play them.
type Samples = Arc<Vec<f32>>;

/// A note resampled for one rate, and whether that is all of the recording.
#[derive(Clone)]
struct Decoded {
    samples: Arc<Vec<f32>>,
    whole: bool,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Library({})", self.describe())
    }
}

/// A file name's (key, layer) for `A0v10.ogg`, `D#1v10.wav` …
fn parse_note_name(stem: &str) -> Option<(u8, usize)> {
    let (name, layer) = stem.split_once('v')?;
    let layer: usize = layer.parse().ok()?;
    let split = name.find(|c: char| c.is_ascii_digit() || c == '-')?;
    let (pitch, octave) = name.split_at(split);
    let octave: i32 = octave.parse().ok()?;
    let class = match pitch {
        "C" => 0,
        "C#" | "Db" => 1,
        "D" => 2,
        "D#" | "Eb" => 3,
        "E" => 4,
        "F" => 5,
        "F#" | "Gb" => 6,
        "G" => 7,
        "G#" | "Ab" => 8,
        "A" => 9,
        "A#" | "Bb" => 10,
        "B" => 11,
        _ => return None,
    };
    let midi = 12 * (octave + 1) + class;
    (21..=108).contains(&midi).then_some((midi as u8, layer))
}

impl Library {
    /// Scans `dir`, decodes every note's attack to measure the layers' levels (so a corrupt
    /// file is named here, not in the middle of training).
    pub fn open(dir: &Path) -> Result<Library> {
        let entries = std::fs::read_dir(dir).with_context(|| {
            format!(
                "Salamander sample folder {} not found: fetch it with `bash scripts/fetch-salamander.sh` (or pass --instrument salamander:DIR)",
                dir.display()
            )
        })?;
        let mut notes = HashMap::new();
        let mut releases = HashMap::new();
        for entry in entries {
            let path = entry?.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !matches!(ext, "ogg" | "wav") {
                continue;
            }
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if let Some(n) = stem
                .strip_prefix("rel")
                .and_then(|n| n.parse::<usize>().ok())
            {
                if (1..=KEYS).contains(&n) {
                    releases.insert(n, path);
                }
            } else if let Some((key, layer)) = parse_note_name(stem) {
                if (1..=LAYERS).contains(&layer) {
                    notes.insert((key, layer), path);
                }
            }
        }
        if notes.is_empty() {
            bail!(
                "{} holds no Salamander note samples (A0v1.ogg … C8v16.ogg): fetch them with `bash scripts/fetch-salamander.sh`",
                dir.display()
            );
        }
        let mut keys: Vec<u8> = notes.keys().map(|&(k, _)| k).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut layers: Vec<usize> = notes.keys().map(|&(_, l)| l).collect();
        layers.sort_unstable();
        layers.dedup();
        let mut lib = Library {
            dir: dir.to_path_buf(),
            notes,
            keys,
            layers,
            layer_db: Vec::new(),
            releases,
            notes_cache: Mutex::new(HashMap::new()),
            releases_cache: Mutex::new(HashMap::new()),
        };
        lib.layer_db = lib.measure_layers()?;
        Ok(lib)
    }

    /// One line for a model's description: the library's credit and which of its files were
    /// there (the folder by name only: a model file should not carry the trainer's home).
    pub fn describe(&self) -> String {
        let folder = self.dir.file_name().unwrap_or(self.dir.as_os_str());
        format!(
            "Salamander Grand Piano V3 by Alexander Holm, CC BY 3.0 ({} keys × {} velocity layers, {} release samples, from {})",
            self.keys.len(),
            self.layers.len(),
            self.releases.len(),
            folder.to_string_lossy()
        )
    }

    /// Whether every file of the full library is there.
    pub fn is_complete(&self) -> bool {
        self.notes.len() == 30 * LAYERS && self.releases.len() == KEYS
    }

    /// Attack level of each layer (dB, the loudest present layer at 0): median over keys.
    fn measure_layers(&self) -> Result<Vec<f64>> {
        let mut db = Vec::new();
        for &layer in &self.layers {
            let mut levels: Vec<f64> = Vec::new();
            for &key in &self.keys {
                if let Some(path) = self.notes.get(&(key, layer)) {
                    let attack = decode_attack(path, LEVEL_SECONDS, Channel::Mix)?;
                    let rms = (attack.iter().map(|&x| (x as f64).powi(2)).sum::<f64>()
                        / attack.len().max(1) as f64)
                        .sqrt();
                    levels.push(20.0 * rms.max(1e-12).log10());
                }
            }
            levels.sort_by(f64::total_cmp);
            db.push(levels[levels.len() / 2]);
        }
        let top = db.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Ok(db.iter().map(|d| d - top).collect())
    }

    /// The present layers a velocity plays and their amplitudes: the layers are spread evenly
    /// over 1..=127 and neighbours crossfade (equal power) over the middle half between them.
    pub fn layer_mix(&self, velocity: u8) -> Vec<(usize, f64)> {
        let m = self.layers.len();
        if m == 1 {
            return vec![(0, 1.0)];
        }
        let p = (velocity.clamp(1, 127) as f64 - 1.0) / 126.0 * (m - 1) as f64;
        let i = (p.floor() as usize).min(m - 2);
        let w = ((p - i as f64 - 0.25) / 0.5).clamp(0.0, 1.0);
        let (lo, hi) = (
            (w * std::f64::consts::FRAC_PI_2).cos(),
            (w * std::f64::consts::FRAC_PI_2).sin(),
        );
        [(i, lo), (i + 1, hi)]
            .into_iter()
            .filter(|&(_, a)| a > 1e-6)
            .collect()
    }

    /// The gain applied to the recorded layers at `velocity`, so that the note plays at
    /// `CURVE_DB · log10(v/127)` dB below the loudest layer at velocity 127.
    pub fn velocity_gain(&self, velocity: u8) -> f64 {
        let power: f64 = self
            .layer_mix(velocity)
            .iter()
            .map(|&(i, a)| a * a * 10f64.powf(self.layer_db[i] / 10.0))
            .sum();
        let natural_db = 10.0 * power.max(1e-30).log10();
        10f64.powf((level_db(velocity) - natural_db) / 20.0)
    }

    /// Key `key` from layer index `layer` (into the present layers) at `rate`, at least `len`
    /// samples of it where the recording lasts: the nearest sampled key, from its attack,
    /// resampled to pitch. Cached by use, and only as long as the clips need (a recording
    /// lasts up to 25 s, a training crop a few).
    fn note(
        &self,
        key: u8,
        layer: usize,
        (rate, channel): (u32, Channel),
        len: usize,
    ) -> Result<Arc<Vec<f32>>> {
        let layer_no = self.layers[layer];
        let at = (key, layer_no, rate, channel);
        if let Some(hit) = self.notes_cache.lock().unwrap().get(&at) {
            if hit.whole || hit.samples.len() >= len {
                return Ok(hit.samples.clone());
            }
        }
        // the nearest key recorded in this layer (ties: the lower one)
        let sampled = self
            .keys
            .iter()
            .copied()
            .filter(|&k| self.notes.contains_key(&(k, layer_no)))
            .min_by_key(|&k| ((k as i32 - key as i32).abs(), k))
            .expect("every present layer has a key");
        let path = &self.notes[&(sampled, layer_no)];
        // playing the recording 2^(d/12) times faster raises it d semitones
        let speed = 2f64.powf((key as f64 - sampled as f64) / 12.0);
        let ratio = rate as f64 / (SOURCE_RATE as f64 * speed);
        // a little more than asked, so the next slightly longer clip hits the cache; played
        // `speed` times faster, a second of output takes `speed` seconds of the recording
        let source_seconds = (len as f64 * 1.25 / rate as f64).max(1.0) * speed;
        let raw = decode_attack(path, source_seconds, channel)?;
        let decoded = Decoded {
            samples: Arc::new(audio::resample_ratio(&raw, ratio)?),
            whole: (raw.len() as f64) < source_seconds * SOURCE_RATE as f64,
        };
        let out = decoded.samples.clone();
        self.notes_cache.lock().unwrap().insert(at, decoded);
        Ok(out)
    }

    /// The release sample of `key` at `rate` (none if the library has no releases).
    fn release(&self, key: u8, (rate, channel): (u32, Channel)) -> Result<Option<Samples>> {
        // rel1..rel88 are numbered up the keyboard; measured, they carry no pitch of their
        // key (damper thumps at 65–135 Hz), so the numbering is all there is to go by
        let n = (key - LOWEST_NOTE) as usize + 1;
        let Some(path) = self.releases.get(&n).or_else(|| {
            (1..=KEYS)
                .filter_map(|m| self.releases.get(&m).map(|p| (m.abs_diff(n), p)))
                .min_by_key(|&(d, _)| d)
                .map(|(_, p)| p)
        }) else {
            return Ok(None);
        };
        if let Some(hit) = self
            .releases_cache
            .lock()
            .unwrap()
            .get(&(key, rate, channel))
        {
            return Ok(Some(hit.clone()));
        }
        let raw = decode(path, f64::INFINITY, channel)?;
        let out = Arc::new(audio::resample_ratio(
            &raw,
            rate as f64 / SOURCE_RATE as f64,
        )?);
        self.releases_cache
            .lock()
            .unwrap()
            .insert((key, rate, channel), out.clone());
        Ok(Some(out))
    }

    /// Renders a performance (events at frame indices) to `frames · hold` mono samples at
    /// `rate`: each event at its frame's first sample.
    pub fn render(
        &self,
        perf: &Performance,
        rate: u32,
        hold: usize,
        frames: usize,
    ) -> Result<Vec<f32>> {
        self.render_channel(perf, (rate, Channel::Mix), hold, frames)
    }

    /// As [`Library::render`], playing one `channel` of the recordings.
    pub fn render_channel(
        &self,
        perf: &Performance,
        (rate, channel): (u32, Channel),
        hold: usize,
        frames: usize,
    ) -> Result<Vec<f32>> {
        let total = frames * hold;
        let mut out = vec![0f32; total];
        for voice in voices(perf, hold) {
            if voice.start >= total {
                continue;
            }
            self.play(&voice, (rate, channel), &mut out[voice.start..])?;
        }
        Ok(out)
    }

    /// Adds one note (all its layers, the damper and the release) into `out`, which starts at
    /// the note's onset.
    fn play(&self, voice: &Voice, (rate, channel): (u32, Channel), out: &mut [f32]) -> Result<()> {
        let gain = self.velocity_gain(voice.velocity);
        let decay = damper_decay(voice.key, rate);
        for (layer, amp) in self.layer_mix(voice.velocity) {
            let note = self.note(voice.key, layer, (rate, channel), out.len())?;
            let amp = (amp * gain) as f32;
            let mut env = 1f32;
            for (i, (o, &s)) in out.iter_mut().zip(note.iter()).enumerate() {
                if voice.damped_at.is_some_and(|d| i >= d) {
                    env *= decay;
                    if env < SILENT {
                        break;
                    }
                }
                *o += amp * env * s;
            }
        }
        if let (Some(at), true) = (voice.damped_at, voice.released) {
            if let Some(rel) = self.release(voice.key, (rate, channel))? {
                let amp = 10f64.powf((level_db(voice.velocity) + RELEASE_DB) / 20.0) as f32;
                for (o, &s) in out.iter_mut().skip(at).zip(rel.iter()) {
                    *o += amp * s;
                }
            }
        }
        Ok(())
    }
}

/// The velocity curve's level in dB (0 at velocity 127).
fn level_db(velocity: u8) -> f64 {
    CURVE_DB * (velocity.clamp(1, 127) as f64 / 127.0).log10()
}

/// Per-sample envelope factor of the damper for `key` at `rate`.
fn damper_decay(key: u8, rate: u32) -> f32 {
    let x = ((key - LOWEST_NOTE) as f64 / (KEYS - 1) as f64).clamp(0.0, 1.0);
    let t60 = DAMPER_T60_LOW * (DAMPER_T60_HIGH / DAMPER_T60_LOW).powf(x);
    (-6.907_755 / (t60 * rate as f64)).exp() as f32
}

/// One struck note: where it starts and, relative to that, where its damper falls.
#[derive(Debug, Clone, PartialEq)]
pub struct Voice {
    pub key: u8,
    pub velocity: u8,
    /// Onset, in samples.
    pub start: usize,
    /// Samples after the onset at which the damper falls (None: rings to the end).
    pub damped_at: Option<usize>,
    /// Whether the damper fell because the key (or the pedal) was let go, which plays the
    /// release sample; a re-strike damps without one.
    pub released: bool,
}

/// The notes a performance strikes, with the pedal's and re-strikes' effect on the dampers.
pub fn voices(perf: &Performance, hold: usize) -> Vec<Voice> {
    let mut voices: Vec<Voice> = Vec::new();
    // the voice sounding on each key, and whether the key is held
    let mut sounding: [Option<usize>; KEYS] = [None; KEYS];
    let mut held = [false; KEYS];
    let mut pedal = false;
    // while the sostenuto pedal is down: the keys it caught as it went down
    let mut sostenuto: Option<[bool; KEYS]> = None;
    let damp = |voices: &mut Vec<Voice>, v: usize, at: usize, released: bool| {
        let voice = &mut voices[v];
        voice.damped_at = Some(at.saturating_sub(voice.start));
        voice.released = released;
    };
    for &(frame, event) in &perf.events {
        let at = frame as usize * hold;
        let key = |note: u8| {
            note.checked_sub(LOWEST_NOTE)
                .map(usize::from)
                .filter(|&k| k < KEYS)
        };
        match event {
            KeyEvent::NoteOn { note, velocity } if velocity > 0 => {
                let Some(k) = key(note) else { continue };
                if let Some(v) = sounding[k].take() {
                    damp(&mut voices, v, at, false);
                }
                held[k] = true;
                sounding[k] = Some(voices.len());
                voices.push(Voice {
                    key: note,
                    velocity,
                    start: at,
                    damped_at: None,
                    released: false,
                });
                continue;
            }
            KeyEvent::NoteOn { note, .. } | KeyEvent::NoteOff { note } => {
                let Some(k) = key(note) else { continue };
                held[k] = false;
            }
            KeyEvent::Sustain { value } => pedal = value >= 64,
            KeyEvent::Sostenuto { value } => {
                if value < 64 {
                    sostenuto = None;
                } else if sostenuto.is_none() {
                    sostenuto = Some(std::array::from_fn(|k| sounding[k].is_some()));
                }
            }
            // the soft pedal acts before the sampler, on the velocities (NoteMap)
            KeyEvent::SoftPedal { .. } => continue,
            KeyEvent::AllNotesOff
            | KeyEvent::AllSoundOff
            | KeyEvent::ResetControllers
            | KeyEvent::Reset => {
                if !matches!(event, KeyEvent::AllNotesOff) {
                    pedal = false;
                    sostenuto = None;
                }
                if !matches!(event, KeyEvent::ResetControllers) {
                    held = [false; KEYS];
                }
            }
        }
        // every key no finger, pedal or sostenuto holds any longer falls silent
        for k in 0..KEYS {
            if !held[k] && !pedal && !sostenuto.is_some_and(|c| c[k]) {
                if let Some(v) = sounding[k].take() {
                    damp(&mut voices, v, at, true);
                }
            }
        }
    }
    voices
}

/// One channel of a sample file at the recording's rate: at most `seconds` of it.
fn decode(path: &Path, seconds: f64, channel: Channel) -> Result<Vec<f32>> {
    Ok(channel.of(decode_all(path, seconds)?))
}

/// A sample file's mix, left and right channels at the recording's rate: at most `seconds`.
fn decode_all(path: &Path, seconds: f64) -> Result<[Vec<f32>; 3]> {
    let limit = (seconds * SOURCE_RATE as f64).min(usize::MAX as f64 / 2.0) as usize;
    let (channels, rate) = read_channels(path, limit)?;
    if rate != SOURCE_RATE {
        bail!(
            "{}: {rate} Hz; the sampler expects {SOURCE_RATE} Hz recordings",
            path.display()
        );
    }
    Ok(channels)
}

/// One channel of the attack and `seconds` after it (or all there is); the attack is found
/// in the mix, so every channel is cut at the same sample.
fn decode_attack(path: &Path, seconds: f64, channel: Channel) -> Result<Vec<f32>> {
    let all = decode_all(path, seconds + ATTACK_SEARCH_SECONDS)?;
    let mix = &all[0];
    let search = mix
        .len()
        .min((ATTACK_SEARCH_SECONDS * SOURCE_RATE as f64) as usize);
    let start = attack_start(&mix[..search]);
    let end = (start + (seconds * SOURCE_RATE as f64) as usize).min(mix.len());
    Ok(channel.of(all)[start..end].to_vec())
}

/// Where a recording's attack begins: `ONSET_LEAD_SECONDS` before it first reaches
/// `ONSET_DB` below its peak.
pub fn attack_start(x: &[f32]) -> usize {
    let peak = x.iter().fold(0f32, |m, &v| m.max(v.abs()));
    let threshold = peak * 10f32.powf(ONSET_DB as f32 / 20.0);
    let first = x.iter().position(|&v| v.abs() >= threshold).unwrap_or(0);
    first.saturating_sub((ONSET_LEAD_SECONDS * SOURCE_RATE as f64) as usize)
}

/// Decodes an OGG Vorbis or WAV file, at most `limit` samples a channel, to its mix (the
/// channels' mean), its first and its second channel (the first again for a mono file); and
/// its rate.
fn read_channels(path: &Path, limit: usize) -> Result<([Vec<f32>; 3], u32)> {
    let (interleaved, channels, rate) = read_interleaved(path, limit)?;
    let frames = || interleaved.chunks_exact(channels);
    let mix: Vec<f32> = frames()
        .map(|c| c.iter().sum::<f32>() / channels as f32)
        .collect();
    if mix.is_empty() {
        bail!("{}: no audio", path.display());
    }
    let left = frames().map(|c| c[0]).collect();
    let right = frames().map(|c| c[1.min(channels - 1)]).collect();
    Ok(([mix, left, right], rate))
}

/// A WAV or OGG Vorbis file's samples, interleaved, at most `limit` a channel; its channel
/// count and rate.
fn read_interleaved(path: &Path, limit: usize) -> Result<(Vec<f32>, usize, u32)> {
    if path.extension().is_some_and(|e| e == "wav") {
        let (_, len) = audio::wav_info(path)?;
        return audio::read_interleaved(path, 0, (len as usize).min(limit));
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = lewton::inside_ogg::OggStreamReader::new(std::io::BufReader::new(file))
        .map_err(|e| anyhow::anyhow!("{} is not an OGG Vorbis file: {e}", path.display()))?;
    let channels = (reader.ident_hdr.audio_channels as usize).max(1);
    let rate = reader.ident_hdr.audio_sample_rate;
    let want = limit.saturating_mul(channels);
    let mut out = Vec::new();
    while out.len() < want {
        let Some(packet) = reader
            .read_dec_packet_generic::<lewton::samples::InterleavedSamples<f32>>()
            .map_err(|e| anyhow::anyhow!("{}: corrupt Vorbis data: {e}", path.display()))?
        else {
            break;
        };
        out.extend(packet.samples);
    }
    out.truncate(want);
    Ok((out, channels, rate))
}
