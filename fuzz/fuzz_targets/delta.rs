//! Fuzzes the delta path's untrusted inputs: a signature from the other side (`parse_signature`, then a diff
//! against it) and a delta from the other side (`apply`). The first input byte picks which; the next two give a
//! base or a target size. Nothing may panic, and an applied delta never writes more than the size it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::transfer::delta;

fuzz_target!(|data: &[u8]| {
    let Some((&[which, size_hi, size_lo], rest)) = data.split_first_chunk::<3>() else { return };
    let size = usize::from(u16::from_be_bytes([size_hi, size_lo]));
    if which % 2 == 0 {
        if let Ok(signature) = delta::parse_signature(rest.to_vec()) {
            let target: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let _ = delta::diff(&signature, &target, size * 2 + 64);
        }
    } else {
        let (base, delta_bytes) = rest.split_at(rest.len() / 2);
        let mut out = Vec::new();
        let applied = delta::apply(base, delta_bytes, &mut out, size as u64);
        assert!(out.len() <= size, "wrote {} bytes for a {size}-byte file", out.len());
        if applied.is_ok() {
            assert_eq!(out.len(), size);
        }
    }
});
