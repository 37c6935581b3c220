//! Deterministic pseudo-random bytes (xorshift): sample data that is neither all zeros nor compressible, the same
//! for the same seed. The demo's large file, and the data of tests and benchmarks.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `size` pseudo-random bytes (xorshift) to `path`, creating its folder: test data that is neither all
/// zeros nor compressible. The demo's large file, and the benchmarks' files.
pub fn write_pseudo_random(path: &Path, size: u64) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| Error::io(path, e))?);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut block = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < size {
        fill_pseudo_random(&mut block, &mut state);
        let n = (size - written).min(block.len() as u64) as usize;
        file.write_all(&block[..n]).map_err(|e| Error::io(path, e))?;
        written += n as u64;
    }
    file.flush().map_err(|e| Error::io(path, e))
}

/// `len` pseudo-random bytes, the same for the same `seed`: [`write_pseudo_random`]'s data, in memory.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0; len];
    fill_pseudo_random(&mut bytes, &mut (seed | 1));
    bytes
}

/// Fills `bytes` from the xorshift generator `state`, eight bytes per step.
fn fill_pseudo_random(bytes: &mut [u8], state: &mut u64) {
    for chunk in bytes.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}
