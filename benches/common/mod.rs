//! Helpers shared by the benchmarks.

use std::io::Write;
use std::path::Path;

/// Writes `size` pseudo-random bytes (xorshift), so files are not trivially compressible or all zeros.
pub fn write_pseudo_random(path: &Path, size: u64) {
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < size {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = (size - written).min(block.len() as u64) as usize;
        file.write_all(&block[..n]).expect("write");
        written += n as u64;
    }
    file.flush().expect("flush");
}
