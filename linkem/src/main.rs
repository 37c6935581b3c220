//! The `linkem` command, for trying tandem over an emulated link by hand: it sets up a link with a named
//! profile, prints how to run commands in each namespace, and keeps the link until Ctrl-C, then prints what
//! the wire did. It can also measure the emulator's ceiling or check a profile's RTT and rate.

use std::time::Duration;

use linkem::{Link, Profile, Side};

const USAGE: &str = "usage: linkem [--profile NAME] [CHANGES] [--check | --ceiling [MB]] | --list
  --profile NAME  the link's profile (default wan); --list shows them
CHANGES to the profile, each way:
  --rate MBIT     bottleneck rate in Mbit/s (0: none)
  --rtt MS        round-trip delay in ms (half each way)
  --jitter MS     ± jitter in ms
  --loss PERCENT  random loss
  --queue KB      drop-tail queue in kB
  --seed N        seed for every random decision
  --check         measure RTT and A→B rate through the profile, then exit
  --ceiling [MB]  measure the emulator's own ceiling (no impairment, default 256 MB), then exit
Without --check or --ceiling it runs until Ctrl-C (or SIGTERM).";

enum Mode {
    Run,
    Check,
    Ceiling(u64),
    List,
}

fn parse(args: &[String]) -> Result<(Profile, Mode), String> {
    let mut profile = Profile::wan();
    let mut changes: Vec<(String, String)> = Vec::new();
    let mut mode = Mode::Run;
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1);
        match args[i].as_str() {
            flag @ ("--rate" | "--rtt" | "--jitter" | "--loss" | "--queue" | "--seed") => {
                changes.push((flag.to_owned(), value.ok_or_else(|| format!("{flag} needs a number"))?.clone()));
                i += 1;
            }
            "--profile" => {
                let name = value.ok_or("--profile needs a name")?;
                profile = Profile::by_name(name).ok_or_else(|| format!("no profile called {name}; see --list"))?;
                i += 1;
            }
            "--check" => mode = Mode::Check,
            "--ceiling" => {
                let mb = value.and_then(|v| v.parse::<u64>().ok());
                mode = Mode::Ceiling(mb.unwrap_or(256) << 20);
                i += usize::from(mb.is_some());
            }
            "--list" => mode = Mode::List,
            // Lets `cargo run -p linkem -- --profile wan1 --` end the options.
            "--" => {}
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
        i += 1;
    }
    for (flag, value) in &changes {
        let bad = || format!("{flag} needs a number, not {value:?}");
        if flag == "--seed" {
            profile.seed = value.parse().map_err(|_| bad())?;
            continue;
        }
        let n: f64 = value.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0).ok_or_else(bad)?;
        let ms = Duration::from_secs_f64(n / 1e3);
        match flag.as_str() {
            "--rate" => profile.rate_bps = (n * 1e6) as u64,
            "--rtt" => profile.one_way_delay = ms / 2,
            "--jitter" => profile.jitter = ms,
            "--loss" => profile.loss = n / 100.0,
            _ => profile.queue_bytes = (n * 1e3) as u64,
        }
    }
    if !changes.is_empty() {
        profile.name = format!("{} (changed)", profile.name);
    }
    profile.validate()?;
    Ok((profile, mode))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (profile, mode) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("linkem: {why}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let result = match mode {
        Mode::List => {
            Profile::all().iter().for_each(|p| println!("{p}"));
            Ok(())
        }
        Mode::Ceiling(bytes) => linkem::ceiling(bytes).map(|t| {
            println!(
                "ceiling: {:.0} Mbit/s ({} MB in {:.2} s)",
                t.bits_per_second() / 1e6,
                t.bytes >> 20,
                t.elapsed.as_secs_f64()
            )
        }),
        Mode::Check => check(profile),
        Mode::Run => run(profile),
    };
    if let Err(e) = result {
        eprintln!("linkem: {e}");
        std::process::exit(1);
    }
}

fn check(profile: Profile) -> linkem::Result<()> {
    let link = Link::start(profile)?;
    println!("{}", link.profile());
    let mut rtts = linkem::tcp_round_trips(&link, 20, Duration::from_secs(10))?;
    rtts.sort();
    println!("TCP round trip: median {:?}, min {:?}, max {:?}", rtts[rtts.len() / 2], rtts[0], rtts[rtts.len() - 1]);
    let transfer = linkem::tcp_bulk(&link, Side::A, 16 << 20, Duration::from_secs(60))?;
    println!("A→B 16 MB: {:.1} Mbit/s in {:.2} s", transfer.bits_per_second() / 1e6, transfer.elapsed.as_secs_f64());
    println!("{}", link.close()?);
    Ok(())
}

fn run(profile: Profile) -> linkem::Result<()> {
    let signals = block_signals()?;
    let link = Link::start(profile)?;
    let (a, b) = (link.ns_a(), link.ns_b());
    println!("{}", link.profile());
    println!("A: namespace {a}, address {}", link.addr_a());
    println!("B: namespace {b}, address {}", link.addr_b());
    println!("for example:");
    println!("  ip netns exec {b} tandem serve --listen {}:7000 DIR", link.addr_b());
    println!("  ip netns exec {a} tandem --remote {}:7000 download tcp FILE", link.addr_b());
    println!("Ctrl-C ends the link.");
    let mut signal: libc::c_int = 0;
    // SAFETY: a valid signal set and a live out-parameter.
    unsafe { libc::sigwait(&signals, &mut signal) };
    println!("\n{}", link.close()?);
    Ok(())
}

/// Blocks SIGINT and SIGTERM in every thread (the wire threads inherit the mask) so `sigwait` receives them
/// and the link is torn down normally.
fn block_signals() -> linkem::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(linkem::Error::Failed(format!("blocking SIGINT and SIGTERM: error {rc}")));
        }
        Ok(set)
    }
}
