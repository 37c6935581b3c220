//! The idle figure: a continuous `tandem sync` process on a folder of 100,000 unchanged files, its CPU time over
//! a window that holds ten polls and one full rescan, read from /proc.

use std::process::Stdio;

use super::*;

/// Writes `files` small files with old mtimes, `files / 1000` to a folder.
fn write_small_tree(root: &Path, files: usize) {
    let per_folder = files.div_ceil(1000);
    for i in 0..files {
        let path = root.join(format!("folder {:03}/file {i:06}.txt", i / per_folder));
        if i % per_folder == 0 {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        }
        let mut file = std::fs::File::create(&path).expect("create");
        file.write_all(format!("small file number {i}\n").as_bytes()).expect("write");
        file.set_modified(long_ago()).expect("set mtime");
    }
}

pub fn idle_cpu(files: usize, window: Duration) {
    let work = tempfile::tempdir().expect("tempdir");
    let (local, share, config) = (work.path().join("local"), work.path().join("share"), work.path().join("config"));
    for dir in [&local, &share, &config] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    write_small_tree(&local, files);
    flush_disk();

    let mut server = Child(
        tandem(&config)
            .arg("serve")
            .arg(&share)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tandem serve"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("stdout")).read_line(&mut line).expect("serving line");
    let addr = line.trim().rsplit(" on ").next().expect("address").to_string();

    let server_pid = server.0.id();
    let server_before_once = cpu_time(server_pid).expect("server CPU time");
    let started = Instant::now();
    let once = tandem(&config)
        .args(["-r", &addr, "sync"])
        .arg(&local)
        .args(["--once", "--json"])
        .output()
        .expect("tandem sync --once");
    let once_time = started.elapsed();
    let once_server_cpu = cpu_time(server_pid).expect("server CPU time") - server_before_once;
    if !once.status.success() {
        let stderr = String::from_utf8_lossy(&once.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
        panic!("tandem sync --once failed:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    let summary: serde_json::Value = serde_json::from_slice(&once.stdout).expect("sync --json output");
    assert_eq!(summary["uploaded"].as_u64(), Some(files as u64), "{summary}");
    flush_disk();

    let client_log = work.path().join("client.log");
    let client = Child(
        tandem(&config)
            .args(["-r", &addr, "sync", "--interval", "6"])
            .arg(&local)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&client_log).expect("client log"))
            .spawn()
            .expect("start tandem sync"),
    );
    let client_pid = client.0.id();
    // The first pass: at least 5 s, then until the process uses no CPU for a full second (at most 60 s).
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let mut last = cpu_time(client_pid).expect("client CPU time (has tandem sync exited?)");
    let quiet = loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = cpu_time(client_pid).expect("client CPU time (has tandem sync exited?)");
        if now == last {
            break true;
        }
        if started.elapsed() > Duration::from_secs(60) {
            break false;
        }
        last = now;
    };
    let startup = started.elapsed();
    let startup_cpu = last;

    let (client_before, server_before) = (cpu_time(client_pid).expect("cpu"), cpu_time(server_pid).expect("cpu"));
    let started = Instant::now();
    std::thread::sleep(window);
    let elapsed = started.elapsed();
    let client_cpu = cpu_time(client_pid).expect("client CPU time (has tandem sync exited?)") - client_before;
    let server_cpu = cpu_time(server_pid).expect("server CPU time") - server_before;
    let client_peak = peak_rss_mb(client_pid);
    drop(client);
    drop(server);

    let percent = |cpu: Duration| 100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64();
    println!("idle CPU of `tandem sync` on {files} unchanged files (separate processes)");
    println!(
        "  initial `sync --once` (upload)  {:>8.1} s   the server used {:.1} s CPU meanwhile",
        once_time.as_secs_f64(),
        once_server_cpu.as_secs_f64()
    );
    if quiet {
        println!(
            "  first pass of `sync`            {:>8.1} s   {:.2} s CPU (until the process was quiet for 1 s)",
            startup.as_secs_f64(),
            startup_cpu.as_secs_f64()
        );
    } else {
        println!(
            "  first pass of `sync`            never quiet: still using CPU after {:.0} s ({:.2} s CPU)",
            startup.as_secs_f64(),
            startup_cpu.as_secs_f64()
        );
    }
    // With --interval 6, a 65 s window holds ten polls and one full rescan: what the default settings (--interval
    // 60, a full rescan every tenth poll) spend in ten minutes.
    let rescan_note = if window >= Duration::from_secs(62) { "10 polls + 1 full rescan" } else { "polls only" };
    println!(
        "  client CPU over {:.0} s, --interval 6 {:>6.2} %   {:.2} s CPU: {rescan_note} (a rescan every minute)",
        elapsed.as_secs_f64(),
        percent(client_cpu),
        client_cpu.as_secs_f64()
    );
    if window >= Duration::from_secs(62) {
        println!(
            "  the same work at the defaults     {:>6.2} %   spread over 600 s (--interval 60)  (target < 1 %)",
            100.0 * client_cpu.as_secs_f64() / 600.0
        );
    }
    println!(
        "  server CPU, same window         {:>8.2} %   {:.2} s CPU (for reference)",
        percent(server_cpu),
        server_cpu.as_secs_f64()
    );
    if let Some(mb) = client_peak {
        println!("  client peak memory (VmHWM)      {mb:>8.1} MB");
    }
    let log = std::fs::read_to_string(&client_log).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).take(5) {
        println!("  client said: {line}");
    }
}
