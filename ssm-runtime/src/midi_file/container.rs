//! The file around the tracks: header chunks and the RMID (RIFF) wrapper, checked before midly
//! reads them.

use crate::error::MidiError;

/// midly 0.5 negates the SMPTE frame-rate byte of every header chunk it meets, which
/// overflows (a panic in debug builds) for -128. Only -24, -25, -29 and -30 are valid, so each
/// header chunk midly would read (the first and any duplicate, bare or inside an RMID
/// wrapper) is checked here first, walking the chunks the way midly does.
pub(super) fn check_smpte_division(bytes: &[u8]) -> Result<(), MidiError> {
    let smf = if bytes.starts_with(b"RIFF") {
        match rmid_data(bytes) {
            Some(data) => data,
            None => return Ok(()), // midly rejects the wrapper itself
        }
    } else {
        bytes
    };
    let mut rest = smf;
    while rest.len() >= 8 {
        let (id, len) = (
            &rest[..4],
            u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]),
        );
        let body = &rest[8..];
        // like midly, a chunk running past the end takes the remainder of the file
        let (chunk, next) = body.split_at((len as usize).min(body.len()));
        if id == b"MThd" && chunk.len() >= 6 && chunk[4] & 0x80 != 0 {
            let fps = chunk[4] as i8;
            if !matches!(fps, -24 | -25 | -29 | -30) {
                let offset = smf.len() - rest.len();
                return Err(MidiError::Timing(format!(
                    "SMPTE frame rate {} in the header chunk at byte {offset} is not 24, 25, \
                     29.97 or 30",
                    -(fps as i16)
                )));
            }
        }
        rest = next;
    }
    Ok(())
}

/// The SMF inside an RMID file, found as midly finds it; `None` where midly would reject
/// the wrapper.
fn rmid_data(bytes: &[u8]) -> Option<&[u8]> {
    let (id, riff) = riff_chunks(bytes).next()?;
    if id != b"RIFF" || riff.get(..4)? != b"RMID" {
        return None;
    }
    riff_chunks(&riff[4..])
        .find(|(id, _)| *id == b"data")
        .map(|(_, data)| data)
}

/// RIFF chunks as (id, data): little-endian lengths, odd-sized chunks padded to even.
fn riff_chunks(mut rest: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        if rest.len() < 8 {
            return None;
        }
        let id = &rest[..4];
        let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let body = &rest[8..];
        let (data, after) = body.split_at(len.min(body.len()));
        rest = if len % 2 == 1 && !after.is_empty() {
            &after[1..]
        } else {
            after
        };
        Some((id, data))
    })
}
