//! "Did you mean": the closest known name to a mistyped one.

/// The candidate closest to a mistyped `name`, when one is close enough to be the
/// likely intent — `redisPass` → `redisPassword`, `maxRetry` → `maxRetries`. Case is
/// ignored, as most of Dapr's names are matched case-insensitively.
///
/// Uses Jaro-Winkler similarity, which rewards a shared beginning: typos and truncated
/// names keep the start of a name far more often than its end.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|candidate| {
            let score = strsim::jaro_winkler(&name, &candidate.to_ascii_lowercase());
            (score, candidate)
        })
        .filter(|(score, _)| *score > 0.8)
        // The first of equally close candidates wins: suggestions stay stable.
        .fold(
            None,
            |best: Option<(f64, &str)>, (score, candidate)| match best {
                Some((best_score, _)) if best_score >= score => best,
                _ => Some((score, candidate)),
            },
        )
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_only_close_names() {
        let known = ["redisHost", "redisPassword", "redisUsername"];
        assert_eq!(closest("redisPass", known), Some("redisPassword"));
        assert_eq!(closest("REDISHOST", known), Some("redisHost"));
        assert_eq!(closest("concurrency", known), None);
        assert_eq!(closest("anything", []), None);
        let owned = ["maxRetries".to_owned(), "policy".to_owned()];
        assert_eq!(
            closest("maxRetry", owned.iter().map(String::as_str)),
            Some("maxRetries")
        );
    }
}
