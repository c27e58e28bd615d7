//! What a careless or hostile user can hand `piano-ssm`: outputs that are devices, FIFOs,
//! read-only files or the inputs themselves; inputs that never end or are far too large;
//! renders stopped by a signal. Each ends in a one-line error (exit 1) or a correct result,
//! and nothing that was there before is destroyed or left behind.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::piano_ssm;
use test_support::reference_dir;

/// [`common::assert_fails`], the message on one line.
fn assert_fails(out: &Output, needle: &str) {
    common::assert_fails(out, needle);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
}

fn scale_mid() -> PathBuf {
    reference_dir().join("midi/scale.mid")
}

/// Files in `dir` whose names start with a dot: the command's temporary files.
fn hidden_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn devices_fifos_and_folders_are_refused_as_outputs() {
    let dir = tempfile::tempdir().unwrap();
    for device in ["/dev/null", "/dev/full"] {
        if !Path::new(device).exists() {
            continue;
        }
        assert_fails(
            &piano_ssm(&[&"render", &scale_mid(), &device]),
            "not a regular file",
        );
        let kind = std::fs::metadata(device).unwrap().file_type();
        assert!(kind.is_char_device(), "{device} is still a device");
    }
    let fifo = dir.path().join("pipe.wav");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    assert_fails(
        &piano_ssm(&[&"render", &scale_mid(), &fifo]),
        "not a regular file",
    );
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    let folder = dir.path().join("folder.wav");
    std::fs::create_dir(&folder).unwrap();
    assert_fails(
        &piano_ssm(&[&"render", &scale_mid(), &folder]),
        "not a regular file",
    );
    let model_out = dir.path().join("pipe.safetensors");
    Command::new("mkfifo").arg(&model_out).status().unwrap();
    let pth = reference_dir().join("weights/PianoSSM_S_MH_maestro_all_16000_model.pth");
    assert_fails(
        &piano_ssm(&[&"import", &pth, &model_out]),
        "not a regular file",
    );
    assert!(hidden_files(dir.path()).is_empty());
}

#[test]
fn inputs_are_never_written_over() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // import onto its own input
    let pth = d.join("copy_16000.pth");
    std::fs::copy(
        reference_dir().join("weights/PianoSSM_S_MH_maestro_all_16000_model.pth"),
        &pth,
    )
    .unwrap();
    let before = std::fs::read(&pth).unwrap();
    assert_fails(&piano_ssm(&[&"import", &pth, &pth]), "is the input");
    assert_eq!(std::fs::read(&pth).unwrap(), before);
    // render onto the model it plays
    let model = d.join("s.safetensors");
    let imported = piano_ssm(&[&"import", &pth, &model]);
    assert!(imported.status.success());
    let model_bytes = std::fs::read(&model).unwrap();
    assert_fails(
        &piano_ssm(&[&"render", &scale_mid(), &model, &"--model", &model]),
        "is the input",
    );
    assert_eq!(std::fs::read(&model).unwrap(), model_bytes);
    // render onto its MIDI file through a hard link and a symbolic link
    let midi = d.join("song.mid");
    std::fs::copy(scale_mid(), &midi).unwrap();
    let midi_bytes = std::fs::read(&midi).unwrap();
    let hard = d.join("hard.wav");
    std::fs::hard_link(&midi, &hard).unwrap();
    assert_fails(&piano_ssm(&[&"render", &midi, &hard]), "is the input");
    let soft = d.join("soft.wav");
    std::os::unix::fs::symlink(&midi, &soft).unwrap();
    assert_fails(&piano_ssm(&[&"render", &midi, &soft]), "is the input");
    assert_eq!(std::fs::read(&midi).unwrap(), midi_bytes);
}

#[test]
fn existing_outputs_keep_their_mode_or_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked.wav");
    std::fs::write(&locked, b"keep me").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o444)).unwrap();
    assert_fails(&piano_ssm(&[&"render", &scale_mid(), &locked]), "read-only");
    assert_eq!(std::fs::read(&locked).unwrap(), b"keep me");

    let shared = dir.path().join("shared.wav");
    std::fs::write(&shared, b"old take").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
    let r = piano_ssm(&[&"render", &scale_mid(), &shared, &"--duration", &"0.5"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let meta = std::fs::metadata(&shared).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640, "the mode is kept");
    assert!(meta.len() > 1000, "the file was replaced by the render");
    assert!(hidden_files(dir.path()).is_empty());
}

#[test]
fn endless_and_oversized_inputs_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wav");
    assert_fails(
        &piano_ssm(&[&"render", &"/dev/zero", &out]),
        "not a regular file",
    );
    assert_fails(&piano_ssm(&[&"info", &"/dev/zero"]), "not a regular file");
    assert_fails(
        &piano_ssm(&[&"render", &scale_mid(), &out, &"--model", &"/dev/zero"]),
        "not a regular file",
    );
    // sparse files: their size is declared, nothing is written to disk
    let big_midi = dir.path().join("big.mid");
    std::fs::File::create(&big_midi)
        .unwrap()
        .set_len(9 << 20)
        .unwrap();
    assert_fails(
        &piano_ssm(&[&"render", &big_midi, &out]),
        "more than the 8 MB",
    );
    let big_model = dir.path().join("big.safetensors");
    std::fs::File::create(&big_model)
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    assert_fails(&piano_ssm(&[&"info", &big_model]), "more than the 64 MB");
    assert!(!out.exists());
}

/// A checkpoint without its training rate in the name: the message says which command
/// takes the rate (`info` and `render` do not).
#[test]
fn a_checkpoint_without_a_rate_names_the_command_that_takes_one() {
    let dir = tempfile::tempdir().unwrap();
    let pth = dir.path().join("model.pth");
    std::fs::copy(
        reference_dir().join("weights/PianoSSM_S_MH_maestro_all_16000_model.pth"),
        &pth,
    )
    .unwrap();
    assert_fails(
        &piano_ssm(&[&"info", &pth]),
        "piano-ssm import --train-rate",
    );
    let model = dir.path().join("model.safetensors");
    let r = piano_ssm(&[&"import", &pth, &model, &"--train-rate", &"16000"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

/// A standard MIDI file (format 0, 480 ticks a beat, 120 bpm) holding middle C for
/// `seconds`: long enough to still be rendering when a signal comes.
fn held_note(seconds: u32) -> Vec<u8> {
    let ticks = seconds * 960;
    let mut delta = vec![(ticks & 0x7f) as u8];
    let mut rest = ticks >> 7;
    while rest > 0 {
        delta.insert(0, 0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    let mut track = vec![0x00, 0x90, 60, 100];
    track.extend(delta);
    track.extend([0x80, 60, 0, 0x00, 0xff, 0x2f, 0x00]);
    let mut smf = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk".to_vec();
    smf.extend((track.len() as u32).to_be_bytes());
    smf.extend(track);
    smf
}

/// SIGINT and SIGTERM in the middle of a render: the command exits (130) and takes its
/// temporary file with it; the output it was replacing keeps what it held.
#[test]
fn an_interrupted_render_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let midi = dir.path().join("held.mid");
    std::fs::write(&midi, held_note(3600)).unwrap();
    let out = dir.path().join("take.wav");
    std::fs::write(&out, b"the previous take").unwrap();
    for signal in ["-INT", "-TERM"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_piano-ssm"))
            .arg("render")
            .args([&midi, &out])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while hidden_files(dir.path()).is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no temporary file"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the render ended early"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        let killed = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "{signal}: {status:?}");
        assert!(
            hidden_files(dir.path()).is_empty(),
            "{signal}: {:?} left behind",
            hidden_files(dir.path())
        );
        assert_eq!(std::fs::read(&out).unwrap(), b"the previous take");
    }
}

/// Writes to `path` a format-0 file (480 ticks a beat) of one track: middle C struck, then
/// `note(i)` for i = 0, 1, … (three bytes each: delta and running-status data) until the file
/// is about `size` bytes, then `tail`. Written as it is made: a child's peak memory counts
/// its parent's peak, which must stay small.
fn dense_midi(path: &Path, size: u64, note: impl Fn(usize) -> [u8; 3], tail: &[u8]) -> u64 {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\0\0\0\0")
        .unwrap();
    let mut body = 4 + tail.len() as u64 + 4;
    f.write_all(&[0x00, 0x90, 60, 64]).unwrap();
    let mut i = 0;
    while 22 + body + 3 <= size {
        f.write_all(&note(i)).unwrap();
        (i, body) = (i + 1, body + 3);
    }
    f.write_all(tail).unwrap();
    f.write_all(&[0x00, 0xff, 0x2f, 0x00]).unwrap();
    f.seek(SeekFrom::Start(18)).unwrap();
    f.write_all(&(body as u32).to_be_bytes()).unwrap();
    f.flush().unwrap();
    22 + body
}

/// Peak resident memory, in bytes, of `piano-ssm args`, which must succeed.
#[allow(clippy::zombie_processes, reason = "wait4 reaps the child")]
fn peak_memory(args: &[&dyn AsRef<std::ffi::OsStr>]) -> u64 {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_piano-ssm"));
    for a in args {
        cmd.arg(a);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 reaps our own child, which `child` never waits for
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "piano-ssm failed: status {status}"
    );
    usage.ru_maxrss as u64 * 1024
}

/// MIDI files near the 8 MB cap cost less than four times their size, however their notes
/// are made: closed at once, never closed (pretty_midi drops them), or all held across a
/// program change (they end in another instrument than they began in). The events are read
/// from the file as they play, not held (they cost 24 times the file when they were).
#[test]
fn large_midi_files_cost_less_than_four_times_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let size = 8_000_000;
    let key = |i: usize| 21 + (i % 88) as u8;
    let mut program_change = vec![0x00, 0xc0, 0x05];
    for k in 21..=108 {
        program_change.extend([0x00, 0x80, k, 0]);
    }
    type Notes<'a> = (&'a str, &'a dyn Fn(usize) -> [u8; 3], &'a [u8]);
    let files: [Notes; 3] = [
        (
            "closing",
            &|i| [1, key(i / 2), if i % 2 == 0 { 64 } else { 0 }],
            &[],
        ),
        ("never-closed", &|i| [0, key(i), 64], &[]),
        ("across-programs", &|i| [1, key(i), 64], &program_change),
    ];
    for (name, note, tail) in files {
        let midi = dir.path().join(format!("{name}.mid"));
        let len = dense_midi(&midi, size, note, tail);
        assert_eq!(std::fs::metadata(&midi).unwrap().len(), len);
        let out = dir.path().join(format!("{name}.wav"));
        let peak = peak_memory(&[&"render", &midi, &out, &"--duration", &"0.5"]);
        assert!(
            peak < 4 * len,
            "{name}: {peak} bytes at peak for a {len} byte file"
        );
    }
}
