//! `render IN... --out-dir DIR`: which files the inputs name, what each output is called,
//! and rendering them on several threads. A bad input is reported with its error and the
//! others still render.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use indicatif::ProgressBar;
use ssm_runtime::MidiFile;

use crate::render::{RenderSettings, Rendered};

/// One input of a batch and where it goes, or why it cannot.
pub struct BatchJob {
    pub input: PathBuf,
    pub output: Result<PathBuf, String>,
}

impl BatchJob {
    /// The output, for a job that rendered.
    fn output_path(&self) -> PathBuf {
        self.output.clone().unwrap_or_default()
    }
}

/// The MIDI files that `inputs` name: files as given, folders searched recursively for
/// `*.mid`/`*.midi`, anything else as a glob pattern. An input that names nothing is an
/// error of its own (returned beside the files, so the rest still render).
pub fn expand(inputs: &[String]) -> (Vec<PathBuf>, Vec<(String, String)>) {
    let (mut files, mut errors) = (Vec::new(), Vec::new());
    for input in inputs {
        let path = Path::new(input);
        if path.is_file() {
            files.push(path.to_path_buf());
        } else if path.is_dir() {
            let before = files.len();
            if let Err(e) = midi_in_folder(path, &mut files) {
                errors.push((input.clone(), format!("cannot read the folder: {e}")));
            } else if files.len() == before {
                errors.push((
                    input.clone(),
                    "the folder holds no .mid or .midi file".into(),
                ));
            }
        } else {
            match glob::glob(input) {
                Err(e) => {
                    errors.push((input.clone(), format!("not a file, folder or pattern: {e}")))
                }
                Ok(paths) => {
                    let found: Vec<PathBuf> = paths.flatten().filter(|p| p.is_file()).collect();
                    if found.is_empty() {
                        errors.push((input.clone(), "no such file, and no file matches it".into()));
                    }
                    files.extend(found);
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    (files, errors)
}

fn midi_in_folder(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            midi_in_folder(&path, files)?;
        } else if is_midi(&path) {
            files.push(path);
        }
    }
    Ok(())
}

fn is_midi(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("mid") || e.eq_ignore_ascii_case("midi"))
}

/// `DIR/<stem>.wav` for each input: never an input itself, never the output of two inputs,
/// and not an existing file unless `force`.
pub fn plan(files: Vec<PathBuf>, out_dir: &Path, force: bool) -> Vec<BatchJob> {
    let inputs: std::collections::HashSet<PathBuf> = files.iter().map(|f| canonical(f)).collect();
    let mut taken = std::collections::HashMap::<PathBuf, PathBuf>::new();
    files
        .into_iter()
        .map(|input| {
            let stem = input.file_stem().unwrap_or_default().to_string_lossy();
            let output = out_dir.join(format!("{stem}.wav"));
            let key = canonical(&output);
            let output = if inputs.contains(&key) {
                Err(format!("{} is one of the inputs", output.display()))
            } else if let Some(first) = taken.get(&key) {
                Err(format!(
                    "{} is already the output of {}",
                    output.display(),
                    first.display()
                ))
            } else if output.exists() && !force {
                Err(format!(
                    "{} exists (--force overwrites it)",
                    output.display()
                ))
            } else {
                taken.insert(key, input.clone());
                Ok(output)
            };
            BatchJob { input, output }
        })
        .collect()
}

/// A path as the file system resolves it (its folder resolved if the file does not exist).
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| {
        let dir = path.parent().and_then(|d| std::fs::canonicalize(d).ok());
        match (dir, path.file_name()) {
            (Some(d), Some(n)) => d.join(n),
            _ => path.to_path_buf(),
        }
    })
}

/// Renders every job on `jobs` threads under one progress bar over all their samples;
/// returns each job's result in order.
pub fn run(
    jobs: &[BatchJob],
    settings: &RenderSettings,
    threads: usize,
    bar: &ProgressBar,
) -> Vec<Result<Rendered, String>> {
    // every file is read first: the bar's length is the batch's length
    let midi: Vec<Result<MidiFile, String>> = jobs
        .iter()
        .map(|j| MidiFile::load(&j.input).map_err(|e| e.to_string()))
        .collect();
    let total: u64 = midi.iter().flatten().map(|m| settings.samples(m)).sum();
    bar.set_length(total);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Rendered, String>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let result = match (&midi[i], &job.output) {
                    (Err(e), _) | (_, Err(e)) => Err(e.clone()),
                    (Ok(m), Ok(out)) => settings.render(m, out, &|n| bar.inc(n)),
                };
                // above the bar, and also when there is no terminal to draw it on
                let line = match &result {
                    Ok(r) => crate::summary(&job.output_path(), r),
                    Err(e) => format!("piano-ssm: error: {}: {e}", job.input.display()),
                };
                bar.suspend(|| eprintln!("{line}"));
                results.lock().expect("no thread panics holding it")[i] = Some(result);
            });
        }
    });
    results
        .into_inner()
        .expect("no thread panicked")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}
