//! linkem: a link emulator for measuring tandem over real-looking links. This first part is the model of one
//! direction of the wire: a `Profile` (rate with a drop-tail queue, delay, jitter, loss, reordering,
//! duplication) and the seeded, deterministic decisions it makes for each packet.

mod profile;
#[allow(dead_code)]
mod rng;
#[allow(dead_code)] // The wire (next) drives it.
mod shaper;

pub use profile::Profile;
