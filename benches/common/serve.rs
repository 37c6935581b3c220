//! Starting `tandem serve` as a process of its own for a benchmark.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Starts `command`, a `tandem serve` with its arguments, and returns it with the address it serves on, read
/// from its first line.
pub fn start_serve(mut command: Command) -> (Child, String) {
    let mut child = command.stdout(Stdio::piped()).spawn().expect("start tandem serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("serving line");
    let addr = line.trim().rsplit(" on ").next().expect("address in the serving line").to_string();
    (child, addr)
}
