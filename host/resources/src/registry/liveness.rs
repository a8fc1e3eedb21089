//! Whether a resource's owner process still runs. A pid alone cannot say:
//! the kernel gives a dead process's pid to the next one in time. A process
//! is its pid and its start time (`/proc/PID/stat` field 22, clock ticks
//! since boot), which no later process with that pid shares.

/// The start time of process `pid`, or `None` if there is no such process
/// (or `/proc` cannot say).
pub(super) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

/// Field 22 of a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses itself, so the fields
/// are counted from the last `)`.
fn parse_start_ticks(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    // After the name: field 3 (state) is the first, so field 22 is the 20th.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// What became of an owner process, as seen now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// The process registered with still runs.
    Alive,
    /// Gone, or its pid belongs to another process now.
    Gone,
}

/// Judges an owner registered with `pid` that started at `registered`
/// (0 if it was already gone then), given its start time now.
pub(super) fn judge(registered: u64, now: Option<u64>) -> Owner {
    match now {
        Some(t) if registered != 0 && t == registered => Owner::Alive,
        _ => Owner::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_field_22_even_after_an_odd_command_name() {
        let line = b"4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615\n";
        assert_eq!(parse_start_ticks(line), Some(987_654));
        assert_eq!(parse_start_ticks(b"garbage"), None);
        let me = start_ticks(std::process::id()).expect("this process has a start time");
        assert_eq!(judge(me, start_ticks(std::process::id())), Owner::Alive);
        assert_eq!(judge(me, Some(me + 1)), Owner::Gone, "pid reused");
        assert_eq!(judge(0, Some(me)), Owner::Gone, "gone at registration");
    }
}
