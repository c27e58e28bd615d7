//! Differential test of the roll encoder against the training pipeline itself: MIDI files
//! generated from seeds (several tracks and channels, format 0 and 1, 24 to 960 ticks per
//! quarter, tempo changes, running status, velocity-0 note-offs, re-strikes before the
//! note-off, chords, notes shorter than a frame, note-on and note-off on one tick, the pedal
//! pressed and lifted within a frame and at 63/64, program changes, percussion, controllers
//! after the last note, notes never ended, empty tracks) are encoded by `MidiFile::roll` and
//! by pretty_midi's `get_piano_roll` (`pretty_midi_roll.py`, in the venv `scripts/test.sh`
//! makes) at the three MIDI rates, and the rolls must be identical frame by frame, length
//! included. Every file in `tests/roll-regressions/` (mismatches found along the way) is
//! compared too. A mismatch prints its seed and is written to `target/roll-mismatches/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ssm_runtime::MidiFile;

const FILES: u64 = 1200;
const RATES: [u32; 3] = [1000, 1200, 1764];

/// splitmix64: a deterministic stream per seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// A track's events: (tick, bytes of the event without its delta).
type Track = Vec<(u64, Vec<u8>)>;

fn vlq(mut v: u64, out: &mut Vec<u8>) {
    let mut bytes = vec![(v & 0x7F) as u8];
    v >>= 7;
    while v > 0 {
        bytes.push((v & 0x7F) as u8 | 0x80);
        v >>= 7;
    }
    out.extend(bytes.iter().rev());
}

/// A standard MIDI file; channel messages drop a repeated status byte (running status) where
/// `rng` says so.
fn smf(format: u16, ppq: u16, tracks: &[Track], rng: &mut Rng) -> Vec<u8> {
    let mut out = b"MThd\0\0\0\x06".to_vec();
    out.extend(format.to_be_bytes());
    out.extend((tracks.len() as u16).to_be_bytes());
    out.extend(ppq.to_be_bytes());
    for track in tracks {
        let mut body = Vec::new();
        let mut last = 0u64;
        let mut running: Option<u8> = None;
        for (tick, bytes) in track {
            vlq(tick - last, &mut body);
            last = *tick;
            let status = bytes[0];
            if status < 0xF0 {
                if running == Some(status) && rng.chance(0.7) {
                    body.extend(&bytes[1..]);
                } else {
                    body.extend(bytes);
                }
                running = Some(status);
            } else {
                // meta events cancel running status
                body.extend(bytes);
                running = None;
            }
        }
        vlq(rng.below(3 * ppq as u64), &mut body);
        body.extend([0xFF, 0x2F, 0x00]);
        out.extend(b"MTrk");
        out.extend((body.len() as u32).to_be_bytes());
        out.extend(body);
    }
    out
}

/// One generated file.
fn generate(seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let ppq = rng.pick(&[24u16, 48, 96, 100, 120, 192, 384, 480, 960]);
    let format = if rng.chance(0.3) { 0 } else { 1 };
    let tracks = if format == 0 {
        1
    } else {
        1 + rng.below(4) as usize
    };
    let length = ppq as u64 * (4 + rng.below(12));
    // a few keys (so notes overlap and re-strike), sometimes one outside the piano
    let keys: Vec<u8> = (0..1 + rng.below(6))
        .map(|_| {
            if rng.chance(0.05) {
                rng.below(128) as u8
            } else {
                21 + rng.below(88) as u8
            }
        })
        .collect();
    // a coarse grid makes chords and shared ticks; a tick of 1 notes shorter than a frame
    let grid = rng.pick(&[1u64, 1, ppq as u64 / 8, ppq as u64 / 4]).max(1);
    let mut out: Vec<Track> = Vec::new();
    for t in 0..tracks {
        let mut track: Track = Vec::new();
        if t == 0 {
            if rng.chance(0.7) {
                track.push((0, tempo(rng.pick(&[500_000u32, 400_000, 600_000, 461_538]))));
            }
            for _ in 0..rng.below(4) {
                let tick = rng.below(length);
                let us = if rng.chance(0.2) {
                    500_000
                } else {
                    250_000 + rng.below(1_000_000) as u32
                };
                track.push((tick, tempo(us)));
            }
            // a conductor track holds only tempi
            if format == 1 && tracks > 1 && rng.chance(0.5) {
                out.push(sorted(track, &mut rng));
                continue;
            }
        }
        if format == 1 && rng.chance(0.1) {
            out.push(sorted(track, &mut rng)); // an empty track
            continue;
        }
        let channels: Vec<u8> = (0..1 + rng.below(3))
            .map(|_| {
                if rng.chance(0.08) {
                    9
                } else {
                    rng.below(4) as u8
                }
            })
            .collect();
        for _ in 0..rng.below(40) {
            let ch = rng.pick(&channels);
            let key = rng.pick(&keys);
            let start = rng.below(length) / grid * grid;
            let len = match rng.below(10) {
                0 => 0,
                1 | 2 => rng.below(ppq as u64 / 8 + 1),
                _ => grid * (1 + rng.below(8)),
            };
            let velocity = 1 + rng.below(127) as u8;
            track.push((start, vec![0x90 | ch, key, velocity]));
            if rng.chance(0.95) {
                let off = if rng.chance(0.5) {
                    vec![0x80 | ch, key, rng.below(128) as u8]
                } else {
                    vec![0x90 | ch, key, 0]
                };
                track.push((start + len, off));
            }
        }
        for _ in 0..rng.below(10) {
            let ch = rng.pick(&channels);
            let tick = rng.below(length + ppq as u64);
            let value = rng.pick(&[0u8, 20, 63, 64, 65, 100, 127]);
            track.push((tick, vec![0xB0 | ch, 64, value]));
            if rng.chance(0.3) {
                // pressed and lifted (or the reverse) within a frame
                let other = if value >= 64 { 0 } else { 127 };
                track.push((tick + rng.below(2), vec![0xB0 | ch, 64, other]));
            }
        }
        if rng.chance(0.3) {
            let ch = rng.pick(&channels);
            let cc = rng.pick(&[7u8, 10, 121, 123]);
            track.push((
                rng.below(length + 2 * ppq as u64),
                vec![0xB0 | ch, cc, rng.below(128) as u8],
            ));
        }
        if rng.chance(0.15) {
            let ch = rng.pick(&channels);
            track.push((rng.below(length), vec![0xC0 | ch, rng.below(8) as u8]));
        }
        out.push(sorted(track, &mut rng));
    }
    smf(format, ppq, &out, &mut rng)
}

fn tempo(us: u32) -> Vec<u8> {
    let b = us.to_be_bytes();
    vec![0xFF, 0x51, 0x03, b[1], b[2], b[3]]
}

/// Time order, events of one tick in a random order (note-off before or after note-on).
fn sorted(mut track: Track, rng: &mut Rng) -> Track {
    for i in (1..track.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        track.swap(i, j);
    }
    track.sort_by_key(|(tick, _)| *tick);
    track
}

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/midi-venv/bin/python");
    let python = std::env::var_os("PIANO_SSM_PRETTY_MIDI_PYTHON").map_or(venv, PathBuf::from);
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh (it makes the venv with pretty_midi), or set \
         PIANO_SSM_PRETTY_MIDI_PYTHON to a python that imports pretty_midi",
        python.display()
    );
    python
}

/// The pipeline's roll of `path` at `rate`: (frames, 88 values each), or None where it wrote
/// none.
fn pipeline_roll(path: &Path, rate: u32) -> Option<Vec<[u16; 88]>> {
    let bytes = std::fs::read(path.with_extension(format!("{rate}.roll"))).ok()?;
    let frames = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let values: Vec<u16> = bytes[8..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(values.len(), frames * 88);
    Some(
        values
            .chunks_exact(88)
            .map(|c| c.try_into().unwrap())
            .collect(),
    )
}

/// The first difference between our roll of `path` and the pipeline's, if any; a roll the
/// pipeline did not write is one (only files it could not read, marked `.err`, are skipped).
fn mismatch(path: &Path, rate: u32) -> Option<String> {
    let Some(theirs) = pipeline_roll(path, rate) else {
        return Some(format!("the pipeline wrote no roll at {rate} Hz"));
    };
    let ours = match MidiFile::load(path) {
        Ok(f) => f.roll(rate, 0.0).frames,
        Err(e) => return Some(format!("pretty_midi reads it, we do not: {e}")),
    };
    if ours.len() != theirs.len() {
        return Some(format!(
            "{} frames, the pipeline's {}",
            ours.len(),
            theirs.len()
        ));
    }
    for (f, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        for k in 0..88 {
            // the pipeline's uint8 cast wrapped above 255; we clamp there
            if a[k] as u16 != b[k].min(255) {
                return Some(format!(
                    "frame {f}, key {}: {} vs the pipeline's {}",
                    k + 21,
                    a[k],
                    b[k]
                ));
            }
        }
    }
    None
}

#[test]
fn rolls_equal_pretty_midis_for_generated_and_regression_files() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    for seed in 0..FILES {
        std::fs::write(
            dir.path().join(format!("seed-{seed:05}.mid")),
            generate(seed),
        )
        .unwrap();
    }
    let regressions = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/roll-regressions");
    for entry in std::fs::read_dir(&regressions).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "mid") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let status = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pretty_midi_roll.py"))
        .arg(dir.path())
        .args(RATES.map(|r| r.to_string()))
        .status()
        .unwrap();
    assert!(status.success(), "pretty_midi_roll.py failed");
    let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/roll-mismatches");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mid"))
        .collect();
    files.sort();
    let (mut compared, mut failures) = (0, Vec::new());
    for path in &files {
        if path.with_extension("err").exists() {
            continue;
        }
        compared += 1;
        for rate in RATES {
            if let Some(why) = mismatch(path, rate) {
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                std::fs::create_dir_all(&keep).unwrap();
                std::fs::copy(path, keep.join(&name)).unwrap();
                failures.push(format!("{name} at {rate} Hz: {why}"));
                break;
            }
        }
    }
    assert!(
        compared >= 1000,
        "only {compared} files were readable by pretty_midi"
    );
    assert!(
        failures.is_empty(),
        "{} of {compared} files differ from the pipeline (kept in {}; add them to \
         tests/roll-regressions once fixed):\n{}",
        failures.len(),
        keep.display(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
