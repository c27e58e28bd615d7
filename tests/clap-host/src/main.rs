//! A small CLAP host for the test suite: loads the built `Piano-SSM.clap`, checks what a host
//! relies on (descriptor, ports, parameters, latency, state), renders a MIDI file through it the
//! way a DAW bounces a track, and compares with a reference render.
//!
//! usage: clap-render PLUGIN.clap IN.mid REFERENCE SAMPLE_RATE BLOCK_SIZE MAX_REL_L2 [FAMILY]
//!
//! REFERENCE is a float WAV from `piano-ssm render` (mono, or stereo: each output channel
//! against its own) or a reference case from `../shared/reference/cases` (its `audio`
//! tensor, mono).
//!
//! or:    clap-render cpu PLUGIN.clap IN.mid SAMPLE_RATE BLOCK_SIZE FAMILY
//!        prints the audio callback's CPU load (percent of the block's duration) for S, L and XL
//! or:    clap-render catalog PLUGIN.clap MODEL_FOLDER
//!        a project saved with family 1 reopens on the same family after a family that sorts
//!        first is added to the folder (the family is saved by name)
//! or:    clap-render flood PLUGIN.clap SAMPLE_RATE BLOCK_SIZE [CONTROLLERS]
//!        sends one block with a host's flood of events (thousands of parameter changes,
//!        CONTROLLERS MIDI controllers (default 4000), hundreds of notes); the plugin must
//!        play on, finite, and the framework must not log that its event buffer filled up
//!        (test.sh reads stderr; its positive control sends more controllers than the
//!        plugin's event capacity and requires the warning)
//!
//! Events go in at `floor(time · rate)` within their block, as a sample-accurate host places
//! them; the plugin's reported latency is compensated by dropping that many leading samples, as
//! a DAW's delay compensation does. Prints one line per check, exits non-zero on any failure.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clack_extensions::audio_ports::{AudioPortInfoBuffer, PluginAudioPorts};
use clack_extensions::latency::PluginLatency;
use clack_extensions::note_ports::{NoteDialects, NotePortInfoBuffer, PluginNotePorts};
use clack_extensions::params::{ParamInfoBuffer, PluginParams};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::{MidiEvent, ParamValueEvent};
use clack_host::prelude::*;
use ssm_runtime::{KeyEvent, MidiFile};

const PLUGIN_ID: &std::ffi::CStr = c"org.piano-ssm.piano-ssm";

struct Host;
struct Shared;

impl SharedHandler<'_> for Shared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {}
}

impl HostHandlers for Host {
    type Shared<'a> = Shared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();
}

/// One pass/fail line of the report.
struct Report {
    failed: usize,
    passed: usize,
    /// Count without printing (the CPU table).
    quiet: bool,
}

impl Report {
    /// `quiet`: count without printing the passes.
    fn new(quiet: bool) -> Report {
        Report {
            failed: 0,
            passed: 0,
            quiet,
        }
    }

    /// The closing 'N passed, N failed' line; exits non-zero on any failure.
    fn finish(self) -> Result<()> {
        println!("{} passed, {} failed", self.passed, self.failed);
        if self.failed > 0 {
            std::process::exit(1);
        }
        Ok(())
    }

    fn check(&mut self, ok: bool, what: impl AsRef<str>) {
        if !self.quiet || !ok {
            println!("{} {}", if ok { "ok  " } else { "FAIL" }, what.as_ref());
        }
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("clap-render: error: {e:#}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("cpu") => return cpu_table(&args[2..]),
        Some("flood") => return flood(&args[2..]),
        Some("catalog") => return catalog_change(&args[2..]),
        _ => {}
    }
    if args.len() < 7 {
        bail!("usage: clap-render PLUGIN.clap IN.mid REFERENCE SAMPLE_RATE BLOCK_SIZE MAX_REL_L2 [FAMILY]");
    }
    let (plugin_path, midi_path, ref_path) = (&args[1], Path::new(&args[2]), Path::new(&args[3]));
    let rate: u32 = args[4].parse().context("SAMPLE_RATE")?;
    let block: u32 = args[5].parse().context("BLOCK_SIZE")?;
    let limit: f64 = args[6].parse().context("MAX_REL_L2")?;
    let family: Option<f64> = args
        .get(7)
        .map(|f| f.parse())
        .transpose()
        .context("FAMILY")?;
    let midi = MidiFile::load(midi_path)?;
    // left and right
    let reference: [Vec<f32>; 2] = if ref_path.extension().is_some_and(|e| e == "safetensors") {
        let mono = read_case(ref_path)?;
        [mono.clone(), mono]
    } else {
        read_wav(ref_path)?
    };
    let len = reference[0].len();

    let entry = load_entry(plugin_path)?;
    let mut report = Report::new(false);
    let factory = entry
        .get_plugin_factory()
        .context("the bundle has no plugin factory")?;
    let ids: Vec<Vec<u8>> = factory
        .plugin_descriptors()
        .filter_map(|d| d.id().map(|id| id.to_bytes().to_vec()))
        .collect();
    report.check(
        ids == [PLUGIN_ID.to_bytes().to_vec()],
        format!("the factory lists exactly {}", PLUGIN_ID.to_string_lossy()),
    );
    let descriptor = factory
        .plugin_descriptors()
        .next()
        .context("no descriptor")?;
    let features: Vec<String> = descriptor
        .features()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    report.check(
        features.iter().any(|f| f == "instrument"),
        format!("descriptor features {features:?} include \"instrument\""),
    );

    let mut instance = new_instance(&entry)?;

    check_ports(&mut instance, &mut report);
    check_params(&mut instance, &mut report)?;
    let family_param = param_id(&mut instance, "Model family")?;
    if let Some(value) = family {
        // before activation, as a host restores a project: the plugin reads it when activated
        set_params(&mut instance, &[(family_param, value)])?;
    }
    check_state_round_trip(&mut instance, &mut report)?;

    let (first, _) = render(&mut instance, &midi, rate, block, len, &mut report)?;
    for (name, ours, theirs) in [
        ("left", &first[0], &reference[0]),
        ("right", &first[1], &reference[1]),
    ] {
        let err = rel_l2(ours, theirs);
        report.check(
            err <= limit,
            format!("{name}: relative L2 {err:.2e} <= {limit:e} against the reference at {rate} Hz, block {block}"),
        );
    }
    let (mono, same) = (reference[0] == reference[1], first[0] == first[1]);
    report.check(
        mono == same,
        format!("the two channels are the same exactly when the reference's are ({mono})"),
    );
    // a second bounce of the same project renders the same samples
    let (second, _) = render(&mut instance, &midi, rate, block, len, &mut report)?;
    report.check(
        first == second,
        "a second bounce after deactivate/activate is identical",
    );

    report.finish()
}

fn load_entry(path: &str) -> Result<PluginEntry> {
    // SAFETY: loading a shared library runs its initialisers; this is our own freshly built bundle
    unsafe { PluginEntry::load(path) }.map_err(|e| anyhow!("cannot load {path}: {e:?}"))
}

fn new_instance(entry: &PluginEntry) -> Result<PluginInstance<Host>> {
    let host_info = HostInfo::new(
        "piano-ssm clap-render",
        "Piano-SSM",
        "https://example.invalid",
        "0.1.0",
    )?;
    let id = c"org.piano-ssm.piano-ssm";
    Ok(PluginInstance::<Host>::new(
        |_| Shared,
        |_| (),
        entry,
        id,
        &host_info,
    )?)
}

/// The id of the parameter called `name`.
fn param_id(instance: &mut PluginInstance<Host>, name: &str) -> Result<ClapId> {
    let handle = instance.plugin_handle();
    let params: PluginParams = handle.get_extension().context("no params extension")?;
    (0..params.count(&handle))
        .find_map(|i| {
            let mut buffer = ParamInfoBuffer::new();
            let info = params.get_info(&handle, i, &mut buffer)?;
            (info.name == name.as_bytes()).then_some(info.id)
        })
        .with_context(|| format!("no parameter {name:?}"))
}

/// Sets parameters while the plugin is inactive (as a host restoring a project does).
fn set_params(instance: &mut PluginInstance<Host>, values: &[(ClapId, f64)]) -> Result<()> {
    let params: PluginParams = instance
        .plugin_handle()
        .get_extension()
        .context("no params extension")?;
    let mut buffer = EventBuffer::with_capacity(values.len());
    for &(id, value) in values {
        buffer.push(&ParamValueEvent::new(0, id, Pckn::match_all(), value));
    }
    let mut inactive = instance
        .inactive_plugin_handle()
        .context("the plugin is active")?;
    params.flush(
        &mut inactive,
        &InputEvents::from_buffer(&buffer),
        &mut OutputEvents::void(),
    );
    Ok(())
}

/// The callback's CPU load for each model size of `family`: the MIDI file played twice (the
/// first pass warms caches), time per `process` call over the block's real-time duration;
/// then 30 s without a note (an instrument idling in a project, where the engine sleeps).
fn cpu_table(args: &[String]) -> Result<()> {
    let [plugin_path, midi_path, rate, block, family] = args else {
        bail!("usage: clap-render cpu PLUGIN.clap IN.mid SAMPLE_RATE BLOCK_SIZE FAMILY");
    };
    let (rate, block, family): (u32, u32, f64) = (rate.parse()?, block.parse()?, family.parse()?);
    let midi = MidiFile::load(Path::new(midi_path))?;
    let entry = load_entry(plugin_path)?;
    let mut report = Report::new(true);
    let len = ((midi.duration() + 1.5) * rate as f64) as usize;
    let budget = block as f64 / rate as f64;
    println!("| model | {rate} Hz, {block}-sample blocks | mean load | p99 | p99.9 | max |");
    println!("|---|---|---:|---:|---:|---:|");
    for (size, name) in ["S", "L", "XL"].iter().enumerate() {
        let mut instance = new_instance(&entry)?;
        let (f, z) = (
            param_id(&mut instance, "Model family")?,
            param_id(&mut instance, "Model size")?,
        );
        set_params(&mut instance, &[(f, family), (z, size as f64)])?;
        render(&mut instance, &midi, rate, block, len, &mut report)?;
        let (_, playing) = render(&mut instance, &midi, rate, block, len, &mut report)?;
        let silence = MidiFile::from_events(Vec::new());
        let idle_len = 30 * rate as usize;
        let (_, idle) = render(&mut instance, &silence, rate, block, idle_len, &mut report)?;
        for (label, mut seconds) in [
            (name.to_string(), playing),
            (format!("{name}, silence"), idle),
        ] {
            seconds.sort_by(f64::total_cmp);
            let load = |q: f64| 100.0 * seconds[((seconds.len() - 1) as f64 * q) as usize] / budget;
            let mean = 100.0 * seconds.iter().sum::<f64>() / seconds.len() as f64 / budget;
            println!(
                "| {label} | {} blocks | {mean:.1} % | {:.1} % | {:.1} % | {:.1} % |",
                seconds.len(),
                load(0.99),
                load(0.999),
                load(1.0)
            );
        }
    }
    Ok(())
}

/// Parameter changes, MIDI controllers and notes in the flood block: what a DAW can send at
/// once (a VST3 host sees 2080 MIDI-controller parameters; an export starts with every
/// automated value and the held notes).
const FLOOD_PARAMS: usize = 4000;
const FLOOD_CCS: &str = "4000";
const FLOOD_NOTES: usize = 400;

enum FloodEvent {
    Param(ClapId, f64),
    Midi([u8; 3]),
}

/// One block with the flood, then a second of quiet blocks; the plugin must play on.
fn flood(args: &[String]) -> Result<()> {
    let (plugin_path, rate, block, controllers) = match args {
        [p, r, b] => (p, r, b, FLOOD_CCS),
        [p, r, b, c] => (p, r, b, c.as_str()),
        _ => bail!("usage: clap-render flood PLUGIN.clap SAMPLE_RATE BLOCK_SIZE [CONTROLLERS]"),
    };
    let (rate, block): (u32, u32) = (rate.parse()?, block.parse()?);
    let controllers: usize = controllers.parse()?;
    let entry = load_entry(plugin_path)?;
    let mut report = Report::new(false);
    let mut instance = new_instance(&entry)?;
    let gain = param_id(&mut instance, "Gain")?;
    let curve = param_id(&mut instance, "Velocity curve")?;
    let config = PluginAudioConfiguration {
        sample_rate: rate as f64,
        min_frames_count: 1,
        max_frames_count: block,
    };
    let processor = instance.activate(|_, _| (), config)?;
    let mut processor = processor
        .start_processing()
        .map_err(|e| anyhow!("start_processing: {e}"))?;
    // each kind spread over the block, then all in time order (as CLAP requires)
    let at = |j: usize, n: usize| (j as u64 * block as u64 / n as u64) as u32;
    let mut events: Vec<(u32, FloodEvent)> = Vec::new();
    for j in 0..FLOOD_PARAMS {
        let change = if j % 2 == 0 {
            (gain, 0.5 + 0.05 * (j % 7) as f64)
        } else {
            (curve, 1.0 + 0.1 * (j % 5) as f64)
        };
        events.push((at(j, FLOOD_PARAMS), FloodEvent::Param(change.0, change.1)));
    }
    for j in 0..controllers {
        // modulation, volume, expression, sustain, soft and sostenuto pedals, ...
        let cc = [1u8, 7, 11, 64, 66, 67, 71, 74][j % 8];
        let status = 0xB0 | (j % 16) as u8;
        events.push((
            at(j, controllers),
            FloodEvent::Midi([status, cc, (j % 128) as u8]),
        ));
    }
    for j in 0..FLOOD_NOTES {
        let (ch, key) = ((j % 16) as u8, 21 + (j % 88) as u8);
        let on = [0x90 | ch, key, 20 + (j % 100) as u8];
        events.push((at(j, 2 * FLOOD_NOTES), FloodEvent::Midi(on)));
        if j % 2 == 0 {
            let off = [0x80 | ch, key, 0];
            events.push((block / 2 + at(j, 2 * FLOOD_NOTES), FloodEvent::Midi(off)));
        }
    }
    events.sort_by_key(|e| e.0);
    let mut input = EventBuffer::with_capacity(events.len());
    for (time, event) in events {
        match event {
            FloodEvent::Param(id, value) => {
                input.push(&ParamValueEvent::new(time, id, Pckn::match_all(), value))
            }
            FloodEvent::Midi(bytes) => input.push(&MidiEvent::new(time, 0, bytes)),
        }
    }
    let sent = input.len();
    let mut ports = AudioPorts::with_capacity(2, 1);
    let mut buffers = vec![vec![0.0f32; block as usize]; 2];
    let (mut finite, mut peak) = (true, 0.0f32);
    let blocks = 1 + rate / block;
    for b in 0..blocks {
        let events = if b == 0 {
            InputEvents::from_buffer(&input)
        } else {
            InputEvents::empty()
        };
        let [l, r] = buffers.as_mut_slice() else {
            unreachable!()
        };
        let mut outputs = ports.with_output_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_output_only([&mut l[..], &mut r[..]].into_iter()),
        }]);
        processor.process(
            &InputAudioBuffers::empty(),
            &mut outputs,
            &events,
            &mut OutputEvents::void(),
            Some(b as u64 * block as u64),
            None,
        )?;
        finite &= l.iter().all(|v| v.is_finite());
        peak = l.iter().fold(peak, |m, v| m.max(v.abs()));
    }
    instance.deactivate(processor.stop_processing());
    report.check(
        finite && peak > 0.0,
        format!("{sent} events in one {block}-sample block, then {} more blocks: finite output, peak {peak:.3}", blocks - 1),
    );
    report.finish()
}

/// Saves a project playing family 1, adds a family named to sort before it to the folder,
/// and loads the project into a new instance (which sees the new folder): the family
/// parameter must follow the saved name to its new index, 2.
fn catalog_change(args: &[String]) -> Result<()> {
    let [plugin_path, folder] = args else {
        bail!("usage: clap-render catalog PLUGIN.clap MODEL_FOLDER");
    };
    let entry = load_entry(plugin_path)?;
    let mut report = Report::new(false);
    let mut first = new_instance(&entry)?;
    let family = param_id(&mut first, "Model family")?;
    set_params(&mut first, &[(family, 1.0)])?;
    let name = param_text(&mut first, family)?;
    let saved = save_state(&mut first)?;
    drop(first);

    // a copy of a model in the folder under a family name that sorts first
    let source = std::fs::read_dir(folder)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .context("no model in the folder")?;
    let mut model = ssm_runtime::Model::load(&source)?;
    model.info.family = "!Sorts first".into();
    let added = Path::new(folder).join("sorts-first.safetensors");
    model.save(&added)?;

    let mut second = new_instance(&entry)?;
    load_state(&mut second, &saved)?;
    let handle = second.plugin_handle();
    let params: PluginParams = handle.get_extension().context("no params extension")?;
    let index = params.get_value(&handle, family).map(f64::round);
    let reopened = param_text(&mut second, family)?;
    std::fs::remove_file(&added)?;
    report.check(
        index == Some(2.0) && reopened == name,
        format!("saved on family 1 ({name}), reopened after a family sorting first was added: family {index:?} ({reopened})"),
    );
    report.finish()
}

/// The display text of a parameter's current value.
fn param_text(instance: &mut PluginInstance<Host>, id: ClapId) -> Result<String> {
    let handle = instance.plugin_handle();
    let params: PluginParams = handle.get_extension().context("no params extension")?;
    let value = params.get_value(&handle, id).context("no value")?;
    let mut text = [0u8; 256];
    let shown = params
        .value_to_text(&handle, id, value, &mut text)
        .map_err(|e| anyhow!("value_to_text: {e:?}"))?;
    Ok(String::from_utf8_lossy(shown).into_owned())
}

/// The plugin's state as a host saves it with the project.
fn save_state(instance: &mut PluginInstance<Host>) -> Result<Vec<u8>> {
    let handle = instance.plugin_handle();
    let state: PluginState = handle.get_extension().context("no state extension")?;
    let mut saved = Vec::new();
    state
        .save(&handle, &mut saved)
        .map_err(|e| anyhow!("state save: {e:?}"))?;
    Ok(saved)
}

/// Loads a saved state, as a host reopening the project does.
fn load_state(instance: &mut PluginInstance<Host>, saved: &[u8]) -> Result<()> {
    let handle = instance.plugin_handle();
    let state: PluginState = handle.get_extension().context("no state extension")?;
    state
        .load(&handle, &mut &saved[..])
        .map_err(|e| anyhow!("state load: {e:?}"))
}

/// Stereo and mono outputs, no audio input, one note port taking MIDI.
fn check_ports(instance: &mut PluginInstance<Host>, report: &mut Report) {
    let handle = instance.plugin_handle();
    match handle.get_extension::<PluginAudioPorts>() {
        Some(ports) => {
            let inputs = ports.count(&handle, true);
            report.check(
                inputs == 0,
                format!("{inputs} audio inputs (an instrument has none)"),
            );
            let mut buffer = AudioPortInfoBuffer::new();
            let channels = ports
                .get(&handle, 0, false, &mut buffer)
                .map(|p| p.channel_count);
            report.check(
                channels == Some(2),
                format!("main output has {channels:?} channels, stereo expected"),
            );
        }
        None => report.check(false, "audio-ports extension present"),
    }
    match handle.get_extension::<PluginNotePorts>() {
        Some(ports) => {
            let mut buffer = NotePortInfoBuffer::new();
            let info = ports.get(&handle, 0, true, &mut buffer);
            let midi = info.is_some_and(|p| p.supported_dialects.contains(NoteDialects::MIDI));
            report.check(
                ports.count(&handle, true) == 1 && midi,
                "one note input port that accepts MIDI",
            );
        }
        None => report.check(false, "note-ports extension present"),
    }
}

/// Every parameter has a unique id, a name, a default inside its range and a display text.
fn check_params(instance: &mut PluginInstance<Host>, report: &mut Report) -> Result<()> {
    let handle = instance.plugin_handle();
    let params: PluginParams = handle.get_extension().context("no params extension")?;
    let mut ids = Vec::new();
    let mut sane = true;
    for i in 0..params.count(&handle) {
        let mut buffer = ParamInfoBuffer::new();
        let info = params
            .get_info(&handle, i, &mut buffer)
            .with_context(|| format!("parameter {i} has no info"))?;
        let name = String::from_utf8_lossy(info.name).into_owned();
        let value = params.get_value(&handle, info.id);
        let mut text = [0u8; 128];
        let shown = value
            .and_then(|v| params.value_to_text(&handle, info.id, v, &mut text).ok())
            .is_some();
        sane &= !name.is_empty()
            && (info.min_value..=info.max_value).contains(&info.default_value)
            && value.is_some_and(|v| (info.min_value..=info.max_value).contains(&v))
            && shown;
        ids.push(info.id);
    }
    let count = ids.len();
    ids.sort();
    ids.dedup();
    report.check(
        count >= 4 && ids.len() == count,
        format!("{count} parameters with unique ids"),
    );
    report.check(
        sane,
        "every parameter has a name, an in-range default and value, and a display text",
    );
    Ok(())
}

/// Saving and loading the state gives back the same bytes (the project reopens as saved).
fn check_state_round_trip(instance: &mut PluginInstance<Host>, report: &mut Report) -> Result<()> {
    let saved = save_state(instance)?;
    load_state(instance, &saved)?;
    let again = save_state(instance)?;
    report.check(
        !saved.is_empty() && saved == again,
        format!("state of {} bytes survives save → load → save", saved.len()),
    );
    Ok(())
}

/// Activates at `rate`, plays the file in blocks of `block` and returns the left and right
/// channels, latency-compensated, `len` samples long, and each block's processing time.
fn render(
    instance: &mut PluginInstance<Host>,
    midi: &MidiFile,
    rate: u32,
    block: u32,
    len: usize,
    report: &mut Report,
) -> Result<([Vec<f32>; 2], Vec<f64>)> {
    let config = PluginAudioConfiguration {
        sample_rate: rate as f64,
        min_frames_count: 1,
        max_frames_count: block,
    };
    let processor = instance.activate(|_, _| (), config)?;
    let latency = {
        let handle = instance.plugin_handle();
        let ext: PluginLatency = handle.get_extension().context("no latency extension")?;
        ext.get(&handle) as usize
    };
    let events: Vec<(u64, [u8; 3])> = midi
        .events()
        .filter_map(|e| {
            Some((
                (e.seconds * rate as f64).floor() as u64,
                midi_bytes(e.event)?,
            ))
        })
        .collect();
    let total = len + latency;
    let (mut left, mut right) = (Vec::with_capacity(total), Vec::with_capacity(total));
    let mut processor = processor
        .start_processing()
        .map_err(|e| anyhow!("start_processing: {e}"))?;
    let mut ports = AudioPorts::with_capacity(2, 1);
    let mut buffers = vec![vec![0.0f32; block as usize]; 2];
    let mut next = 0;
    let mut start = 0u64;
    let mut seconds = Vec::with_capacity(total / block as usize + 1);
    while (start as usize) < total {
        let n = (block as usize).min(total - start as usize);
        let mut input = EventBuffer::with_capacity(16);
        while next < events.len() && events[next].0 < start + n as u64 {
            input.push(&MidiEvent::new(
                (events[next].0 - start) as u32,
                0,
                events[next].1,
            ));
            next += 1;
        }
        let [l, r] = buffers.as_mut_slice() else {
            unreachable!()
        };
        let mut outputs = ports.with_output_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_output_only([&mut l[..n], &mut r[..n]].into_iter()),
        }]);
        let t0 = Instant::now();
        processor.process(
            &InputAudioBuffers::empty(),
            &mut outputs,
            &InputEvents::from_buffer(&input),
            &mut OutputEvents::void(),
            Some(start),
            None,
        )?;
        seconds.push(t0.elapsed().as_secs_f64());
        left.extend_from_slice(&l[..n]);
        right.extend_from_slice(&r[..n]);
        start += n as u64;
    }
    instance.deactivate(processor.stop_processing());
    report.check(
        left[..latency]
            .iter()
            .chain(&right[..latency])
            .all(|&v| v == 0.0),
        format!("silent for the {latency} samples of reported latency"),
    );
    Ok(([left.split_off(latency), right.split_off(latency)], seconds))
}

/// The raw MIDI bytes of a file event (channel 1).
fn midi_bytes(event: KeyEvent) -> Option<[u8; 3]> {
    Some(match event {
        KeyEvent::NoteOn { note, velocity } => [0x90, note, velocity],
        KeyEvent::NoteOff { note } => [0x80, note, 0],
        KeyEvent::Sustain { value } => [0xB0, 64, value],
        KeyEvent::Sostenuto { value } => [0xB0, 66, value],
        KeyEvent::SoftPedal { value } => [0xB0, 67, value],
        KeyEvent::AllNotesOff => [0xB0, 123, 0],
        KeyEvent::AllSoundOff => [0xB0, 120, 0],
        KeyEvent::ResetControllers => [0xB0, 121, 0],
        KeyEvent::Reset => return None,
    })
}

/// A float WAV's left and right channels (a mono file's one channel twice).
fn read_wav(path: &Path) -> Result<[Vec<f32>; 2]> {
    let mut reader =
        hound::WavReader::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if spec.sample_format != hound::SampleFormat::Float || !(1..=2).contains(&channels) {
        bail!(
            "{}: expected a mono or stereo float WAV from `piano-ssm render`",
            path.display()
        );
    }
    let samples: Vec<f32> = reader
        .samples::<f32>()
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let channel = |c: usize| samples.iter().skip(c).step_by(channels).copied().collect();
    Ok([channel(0), channel(channels - 1)])
}

/// The `audio` tensor of a reference case.
fn read_case(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let audio = tensors
        .tensor("audio")
        .with_context(|| format!("{} has no audio tensor", path.display()))?;
    if audio.dtype() != safetensors::Dtype::F32 {
        bail!(
            "{}: audio is {:?}, f32 expected",
            path.display(),
            audio.dtype()
        );
    }
    Ok(audio
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        diff += ((x - y) as f64).powi(2);
        norm += (*y as f64).powi(2);
    }
    (diff / norm.max(1e-300)).sqrt()
}
