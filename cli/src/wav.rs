//! WAV output: a file written as audio arrives, replacing its target only when complete.

use std::path::Path;

use ssm_runtime::fsutil::TempFile;

/// WAV sample formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WavFormat {
    /// 32-bit float (keeps peaks above full scale)
    F32,
    /// 16-bit integer
    S16,
    /// 24-bit integer
    S24,
}

impl WavFormat {
    fn spec(self, sample_rate: u32, channels: u16) -> hound::WavSpec {
        let (bits, sample_format) = match self {
            WavFormat::F32 => (32, hound::SampleFormat::Float),
            WavFormat::S16 => (16, hound::SampleFormat::Int),
            WavFormat::S24 => (24, hound::SampleFormat::Int),
        };
        hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: bits,
            sample_format,
        }
    }

    /// Full scale of an integer format.
    fn full_scale(self) -> Option<f32> {
        match self {
            WavFormat::F32 => None,
            WavFormat::S16 => Some(32767.0),
            WavFormat::S24 => Some(8_388_607.0),
        }
    }
}

/// A WAV file written as audio arrives, mono samples repeated on every channel. It goes to a
/// temporary file beside the target ([`TempFile`]) and replaces the target only when
/// finished and synced, so a failed or interrupted render never leaves half a file where a
/// good one was, nor a temporary file behind.
pub struct WavFile {
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
    /// the temporary file again, to sync it once the writer is done
    file: std::fs::File,
    tmp: TempFile,
    format: WavFormat,
    clipped: u64,
}

impl WavFile {
    pub fn create(
        path: &Path,
        sample_rate: u32,
        format: WavFormat,
        channels: u16,
    ) -> std::io::Result<WavFile> {
        let (tmp, file) = TempFile::create(path)?;
        let sync = file.try_clone()?;
        let buffered = std::io::BufWriter::new(file);
        let writer = hound::WavWriter::new(buffered, format.spec(sample_rate, channels))
            .map_err(io_error)?;
        Ok(WavFile {
            writer: Some(writer),
            file: sync,
            tmp,
            format,
            clipped: 0,
        })
    }

    /// Appends samples, interleaved as the file's channels are (left, right, left, …).
    pub fn write(&mut self, samples: &[f32]) -> std::io::Result<()> {
        let w = self.writer.as_mut().expect("written after finish");
        for &s in samples {
            match self.format.full_scale() {
                None => w.write_sample(s),
                Some(full) => {
                    self.clipped += u64::from(!(-1.0..=1.0).contains(&s));
                    w.write_sample((s.clamp(-1.0, 1.0) * full).round() as i32)
                }
            }
            .map_err(io_error)?;
        }
        Ok(())
    }

    /// Completes the file, syncs it and moves it over the target. Returns how many samples
    /// had to be clipped (integer formats only).
    pub fn finish(self) -> std::io::Result<u64> {
        let clipped = self.clipped;
        self.complete()?.commit()?;
        Ok(clipped)
    }

    /// Completes and syncs the file but leaves it where it is, to be read back from
    /// [`TempFile::path`] and removed when dropped (a draft, never the output).
    pub fn finish_draft(self) -> std::io::Result<TempFile> {
        self.complete()
    }

    fn complete(mut self) -> std::io::Result<TempFile> {
        let writer = self.writer.take().expect("finished once");
        writer.finalize().map_err(io_error)?;
        self.file.sync_all()?;
        Ok(self.tmp)
    }
}

fn io_error(e: hound::Error) -> std::io::Error {
    match e {
        hound::Error::IoError(io) => io,
        other => std::io::Error::other(other.to_string()),
    }
}
