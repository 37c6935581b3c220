//! The emulator's own ceiling: a TCP transfer through a link with no impairment must be well above the rates
//! of the profiles tandem is measured on. Its own test binary, so nothing else competes for the two cores.

#![allow(clippy::unwrap_used)] // A test that cannot go on stops with the reason; that is its report.

#[test]
fn ceiling_is_far_above_the_wan_profiles() {
    if !linkem::available_or_skip("ceiling_is_far_above_the_wan_profiles") {
        return;
    }
    let transfer = linkem::ceiling(256 << 20).unwrap();
    let mbit = transfer.bits_per_second() / 1e6;
    eprintln!(
        "emulator ceiling (TCP, no impairment): {mbit:.0} Mbit/s ({} MB in {:?})",
        transfer.bytes >> 20,
        transfer.elapsed
    );
    // Four times the 100 Mbit/s profiles; the 1 Gbit/s LAN profile needs the figure printed above.
    assert!(mbit >= 400.0, "the emulator tops out at {mbit:.0} Mbit/s");
}
