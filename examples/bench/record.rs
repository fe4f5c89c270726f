//! The benchmark's figures as a dated entry in docs/benchmarks.md, and the small helpers the
//! figures need.

use super::*;

/// Appends the figures `table` to `path` with the machine and the command that produced them.
pub fn append(path: &str, a: &Args, table: &str) -> Result<()> {
    let machine = format!(
        "{} cores ({}), {} GiB",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c.lines().find_map(|l| l
                .strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())))
            .unwrap_or_default(),
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok()))
            .map(|k| k / 1024 / 1024)
            .unwrap_or(0),
    );
    let entry = format!(
        "\n## {} — N = {}, {:?} API{}\n\nMachine: {machine}. Command: `make bench N={}` (poll interval {} ms, {} steady cycles). Controller: `{}`.\n\n{table}",
        Utc::now().format("%Y-%m-%d %H:%M UTC"), a.n, a.api,
        match (a.audit, a.template) {
            (true, _) => ", audit-stream events",
            (false, true) => ", templated",
            (false, false) => "",
        }, a.n, a.poll_ms, a.cycles,
        controller_build(&a.controller)
    );
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(entry.as_bytes())?;
    eprintln!("appended to {path}");
    Ok(())
}

/// The controller binary's build, as `target-triple/profile` (or the path when not under a
/// cargo target dir): says whether the image's static musl binary was measured.
pub fn controller_build(path: &str) -> String {
    let parts: Vec<&str> = path.rsplit('/').skip(1).take(2).collect();
    match parts.as_slice() {
        [profile, triple] if triple.contains("-linux-") => format!("{triple}/{profile}"),
        [profile, _] => format!("host/{profile}"),
        _ => path.to_string(),
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}
