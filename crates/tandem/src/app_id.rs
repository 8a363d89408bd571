//! App ids made up for a `run` without `--app-id`, in the shape `dapr run` makes them:
//! a noun run into an adjective, a dash, another noun (`fangbright-otter`). A fresh one
//! each run, so two runs of one example never share state keys or collide by name.

use std::hash::{BuildHasher, Hasher};

const NOUNS: &[&str] = &[
    "otter", "falcon", "badger", "heron", "lynx", "marten", "puffin", "raven", "salmon", "walrus",
    "beacon", "anchor", "comet", "ember", "glacier", "harbor", "island", "lantern", "meadow",
    "nebula", "orchard", "pebble", "quarry", "ridge", "summit", "thicket", "tundra", "valley",
    "willow", "zephyr", "acorn", "bramble", "canyon", "delta", "fjord", "grove", "hollow",
    "kestrel", "lagoon", "moth", "newt", "osprey", "plover", "quail", "rook", "sparrow", "tern",
    "vole", "wren", "yak", "basalt", "cinder", "dune", "fern", "gale", "horn", "ivy", "jasper",
    "kelp", "loam",
];

const ADJECTIVES: &[&str] = &[
    "amber", "bold", "brisk", "calm", "clever", "crisp", "dapper", "eager", "fancy", "gentle",
    "glad", "grand", "hardy", "jolly", "keen", "lively", "lucky", "merry", "mild", "nimble",
    "noble", "plucky", "proud", "quick", "quiet", "rapid", "rosy", "rustic", "shiny", "silent",
    "sleek", "snowy", "spry", "steady", "sunny", "swift", "tidy", "vivid", "warm", "wild", "wise",
    "witty", "zesty", "bright", "cosy", "dusky", "fleet", "golden", "hazel", "icy",
];

/// A fresh app id that none of `taken` already uses.
pub fn generate(taken: &[String]) -> String {
    let mut random = Random::new();
    loop {
        let id = format!(
            "{}{}-{}",
            random.pick(NOUNS),
            random.pick(ADJECTIVES),
            random.pick(NOUNS)
        );
        if !taken.contains(&id) {
            return id;
        }
    }
}

/// Randomness without a dependency: std's per-process random hasher keys, stirred
/// with the time and the pid.
struct Random(u64);

impl Random {
    fn new() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            hasher.write_u128(now.as_nanos());
        }
        Self(hasher.finish() | 1)
    }

    /// xorshift64*: plenty for picking words.
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick(&mut self, words: &[&'static str]) -> &'static str {
        let index = (self.next() % words.len() as u64) as usize;
        words.get(index).copied().unwrap_or("app")
    }
}

#[cfg(test)]
mod tests {
    use super::generate;

    #[test]
    fn ids_have_daprs_shape_and_differ() {
        let first = generate(&[]);
        let (head, tail) = first.split_once('-').expect("one dash");
        assert!(!head.is_empty() && !tail.is_empty());
        assert!(first.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
        let many: std::collections::HashSet<String> = (0..20).map(|_| generate(&[])).collect();
        assert!(many.len() > 15, "{many:?}");
        assert_ne!(generate(std::slice::from_ref(&first)), first);
    }
}
