//! MAESTRO v3.0.0: `maestro-v3.0.0.csv` (or the column-oriented `.json`) lists each performance
//! with its split, year and file names relative to the dataset folder.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ssm_runtime::checkpoint::MAESTRO_YEARS;

use super::files::{Pair, PairedFiles};
use super::Rates;

/// One row of the index.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub split: String,
    pub year: String,
    pub midi_filename: String,
    pub audio_filename: String,
}

/// Which years a split uses: `all`, `single` (one file, the paper's overfitting run) or a year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YearFilter {
    All,
    Single,
    Year(String),
}

impl YearFilter {
    pub fn parse(s: &str) -> Result<YearFilter> {
        match s {
            "all" => Ok(YearFilter::All),
            "single" => Ok(YearFilter::Single),
            y if MAESTRO_YEARS.contains(&y) => Ok(YearFilter::Year(y.into())),
            other => bail!(
                "MAESTRO year {other:?}: expected all, single or one of {}",
                MAESTRO_YEARS.join(", ")
            ),
        }
    }
}

/// Reads the index from `root`: the CSV if present, else the JSON.
pub fn read_index(root: &Path) -> Result<Vec<Row>> {
    if !root.is_dir() {
        bail!("MAESTRO folder {} does not exist", root.display());
    }
    let csv_path = root.join("maestro-v3.0.0.csv");
    let json_path = root.join("maestro-v3.0.0.json");
    let rows = if csv_path.is_file() {
        read_csv(&csv_path)?
    } else if json_path.is_file() {
        read_json(&json_path)?
    } else {
        bail!(
            "{}: neither maestro-v3.0.0.csv nor maestro-v3.0.0.json found",
            root.display()
        );
    };
    if rows.is_empty() {
        bail!("{}: the MAESTRO index lists no files", root.display());
    }
    Ok(rows)
}

fn read_csv(path: &Path) -> Result<Vec<Row>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{}: no column {name:?}", path.display()))
    };
    let (split, year, midi, audio) = (
        col("split")?,
        col("year")?,
        col("midi_filename")?,
        col("audio_filename")?,
    );
    let mut rows = Vec::new();
    for record in reader.records() {
        let r = record.with_context(|| format!("malformed row in {}", path.display()))?;
        rows.push(Row {
            split: r[split].into(),
            year: r[year].into(),
            midi_filename: r[midi].into(),
            audio_filename: r[audio].into(),
        });
    }
    Ok(rows)
}

/// The JSON is column-oriented: {"split": {"0": "train", …}, "year": {"0": 2018, …}, …}.
fn read_json(path: &Path) -> Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc: BTreeMap<String, BTreeMap<String, serde_json::Value>> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a MAESTRO column index", path.display()))?;
    let column = |name: &str| {
        doc.get(name)
            .with_context(|| format!("{}: no column {name:?}", path.display()))
    };
    let text_of = |v: &serde_json::Value| {
        v.as_str()
            .map(String::from)
            .unwrap_or_else(|| v.to_string())
    };
    let split = column("split")?;
    let mut keys: Vec<&String> = split.keys().collect();
    keys.sort_by_key(|k| k.parse::<usize>().unwrap_or(usize::MAX));
    keys.into_iter()
        .map(|k| {
            let get = |c: &str| -> Result<String> {
                Ok(text_of(
                    column(c)?
                        .get(k)
                        .with_context(|| format!("row {k} lacks {c}"))?,
                ))
            };
            Ok(Row {
                split: get("split")?,
                year: get("year")?,
                midi_filename: get("midi_filename")?,
                audio_filename: get("audio_filename")?,
            })
        })
        .collect()
}

/// Head labels: one per year with `multi_head`, otherwise a single head.
pub fn heads(multi_head: bool) -> Vec<String> {
    if multi_head {
        MAESTRO_YEARS.iter().map(|y| y.to_string()).collect()
    } else {
        vec!["all".into()]
    }
}

fn pairs(
    root: &Path,
    rows: &[Row],
    split: &str,
    years: &YearFilter,
    multi_head: bool,
) -> Vec<Pair> {
    let mut out: Vec<Pair> = rows
        .iter()
        .filter(|r| r.split == split)
        .filter(|r| match years {
            YearFilter::Year(y) => &r.year == y,
            _ => true,
        })
        .map(|r| Pair {
            midi: root.join(&r.midi_filename),
            wav: root.join(&r.audio_filename),
            head: if multi_head {
                MAESTRO_YEARS.iter().position(|y| *y == r.year).unwrap_or(0)
            } else {
                0
            },
        })
        .collect();
    // the paper's overfitting run trains (and tests) on one performance: the first listed
    if *years == YearFilter::Single {
        out.truncate(1);
    }
    out
}

pub fn open(
    root: &Path,
    rates: Rates,
    train_years: &YearFilter,
    test_years: &YearFilter,
    multi_head: bool,
) -> Result<PairedFiles> {
    let rows = read_index(root)?;
    let train = pairs(root, &rows, "train", train_years, multi_head);
    let (validation, test) = if *train_years == YearFilter::Single {
        (train.clone(), train.clone())
    } else {
        (
            pairs(root, &rows, "validation", test_years, multi_head),
            pairs(root, &rows, "test", test_years, multi_head),
        )
    };
    if train.is_empty() {
        bail!(
            "{}: no training files for year {train_years:?}",
            root.display()
        );
    }
    PairedFiles::new(
        &format!("MAESTRO v3.0.0 at {}", root.display()),
        train,
        validation,
        test,
        rates,
        heads(multi_head),
        "year",
    )
}
