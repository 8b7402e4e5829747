//! "Did you mean" suggestions: for misspelt keys, options, commands and
//! service names.
//!
//! What it must never do: suggest what is no likely typo (a name replaced
//! outright), or take time and memory out of proportion to the names.

/// The candidate closest to `input`, when it is close enough to be a likely
/// typo: at most 2 edits, or a third of the candidate's length for long
/// names, and fewer edits than `input` has characters (so `"x"` suggests
/// nothing). Ties go to the earliest candidate.
pub fn closest<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let input_len = input.chars().count();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let candidate_len = candidate.chars().count();
        let limit = (candidate_len / 3).max(2);
        // The distance is at least the difference in length: skip the work
        // (and the memory, for a pathological megabyte-long key).
        if input_len.abs_diff(candidate_len) > limit {
            continue;
        }
        let distance = edit_distance(input, candidate);
        if distance == 0 || distance > limit || distance >= input_len {
            continue;
        }
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and
/// transpositions of adjacent characters each cost 1 (`comamnd` is one edit
/// from `command`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    // rows[i * width + j] = distance between a[..i] and b[..j].
    let mut rows = vec![0usize; (a.len() + 1) * width];
    for (i, cell) in rows.iter_mut().step_by(width).enumerate() {
        *cell = i;
    }
    for (j, cell) in rows.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    let at =
        |rows: &[usize], i: usize, j: usize| rows.get(i * width + j).copied().unwrap_or(usize::MAX);
    for (i, ca) in a.iter().enumerate() {
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let mut d = (at(&rows, i, j + 1).saturating_add(1))
                .min(at(&rows, i + 1, j).saturating_add(1))
                .min(at(&rows, i, j).saturating_add(cost));
            if i > 0 && j > 0 && a.get(i - 1) == Some(cb) && b.get(j - 1) == Some(ca) {
                d = d.min(at(&rows, i - 1, j - 1).saturating_add(1));
            }
            if let Some(cell) = rows.get_mut((i + 1) * width + j + 1) {
                *cell = d;
            }
        }
    }
    at(&rows, a.len(), b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("command", "command"), 0);
        assert_eq!(edit_distance("comand", "command"), 1);
        assert_eq!(edit_distance("comamnd", "command"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggests_only_close_names() {
        let keys = [
            "command",
            "user",
            "env",
            "restart-delay",
            "restart-delay-max",
        ];
        assert_eq!(closest("comand", keys), Some("command"));
        assert_eq!(closest("usr", keys), Some("user"));
        assert_eq!(closest("restart_delay", keys), Some("restart-delay"));
        assert_eq!(
            closest("restart_delay_max", keys),
            Some("restart-delay-max")
        );
        assert_eq!(closest("x", keys), None);
        // Replacing every character is no typo.
        assert_eq!(closest("ab", ["cd"]), None);
        assert_eq!(closest("ab", ["ac"]), Some("ac"));
        assert_eq!(closest("frobnicate", keys), None);
    }
}
