//! Gzip on all cores, written as one ordinary gzip member (as pigz does), so every reader —
//! including single-member decoders — can open the result.
//!
//! The input is cut into chunks compressed independently as raw deflate; every chunk but the
//! last ends with a sync flush (byte-aligned, not final), so the concatenation is one valid
//! deflate stream. The CRC-32 is combined from the chunks' CRCs.

use std::io::{self, Write};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use rayon::prelude::*;

/// Level 1: the fastest; the size is within a few percent of level 6 on MR images.
const LEVEL: u32 = 1;
const CHUNK: usize = 1 << 20;

/// Compresses `data` into `out` as a gzip file.
pub fn write_parallel<W: Write>(out: &mut W, data: &[u8]) -> io::Result<()> {
    let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
    let last = chunks.len().saturating_sub(1);
    let compressed: Vec<(Vec<u8>, Crc)> = chunks
        .par_iter()
        .enumerate()
        .map(|(i, c)| deflate_chunk(c, i == last))
        .collect::<io::Result<_>>()?;
    // Magic, deflate, no flags, no mtime, no extra flags, unknown OS.
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
    let mut crc = Crc::new();
    if compressed.is_empty() {
        out.write_all(&[0x03, 0x00])?; // an empty final block
    }
    for (bytes, c) in &compressed {
        out.write_all(bytes)?;
        crc.combine(c);
    }
    out.write_all(&crc.sum().to_le_bytes())?;
    out.write_all(&(data.len() as u32).to_le_bytes())?;
    Ok(())
}

/// Raw deflate of one chunk, ending with a sync flush, or with the final block when `last`.
fn deflate_chunk(chunk: &[u8], last: bool) -> io::Result<(Vec<u8>, Crc)> {
    let mut comp = Compress::new(Compression::new(LEVEL), false);
    let mut out = Vec::with_capacity(chunk.len() / 2 + 4096);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut consumed = 0usize;
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(chunk.len() / 4 + 65536);
        }
        let before = comp.total_in();
        let status = comp
            .compress_vec(&chunk[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        consumed += (comp.total_in() - before) as usize;
        let room_left = out.capacity() > out.len();
        match status {
            Status::StreamEnd => break,
            _ if !last && consumed == chunk.len() && room_left => break,
            _ => {}
        }
    }
    let mut crc = Crc::new();
    crc.update(chunk);
    Ok((out, crc))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    #[test]
    fn round_trips_through_a_single_member_decoder() {
        let data: Vec<u8> = (0..3_500_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        for input in [&data[..], &data[..10], &[][..]] {
            let mut gz = Vec::new();
            super::write_parallel(&mut gz, input).unwrap();
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, input);
        }
    }
}
